"""A small reader for dictd dictionaries (``NAME.index`` + ``NAME.dict.dz``), the format of Debian's FreeDict packages.

The index is one line per headword: ``headword<TAB>offset<TAB>length``, the two numbers in dictd's base64 digits
(``A``=0 … ``/``=63, most significant first), pointing into the uncompressed text of the ``.dict`` file. FreeDict's
indexes are case-folded (``gold``, ``kuh``), so look-ups lower-case the word first.

``.dict.dz`` is dictzip: a gzip member whose header carries a ``RA`` extra field listing the compressed size of each
fixed-size chunk; every chunk starts on a full flush, so one entry is read by inflating only the chunks that hold it
(the German dictionary is 95 MB uncompressed and is never read whole). A plain ``.dict`` is read directly.

The index is not read into memory: it is copied once into a SQLite look-up table (:mod:`.store`, in the cache
folder), so opening a dictionary costs nothing on later starts.

Entries are plain text: the headword line (with ``/ipa/`` and ``<pos>`` tags), then the translations, either one
line (``fur, hide, skin``) or numbered senses (``1. fur, hide, skin`` ``2. fur coat``); some dictionaries add
examples, ``Synonyms:`` / ``see:`` lines or definitions in the source language, which :func:`senses` skips.
"""

from __future__ import annotations

import re
import sqlite3
import struct
import threading
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .store import Index, IndexStore

__all__ = ["DictdDictionary", "Entry", "Sense", "parse_entry"]

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_GZIP_MAGIC = b"\x1f\x8b"
_FEXTRA, _FNAME, _FCOMMENT, _FHCRC = 4, 8, 16, 2
_POS_TAG = re.compile(r"<([^<>]{1,40})>")
_SENSE_NUMBER = re.compile(r"^\s*(\d+)\.\s*")
_TRAILING_NUMBER = re.compile(r"\s+\d+\.\s*$")
_BRACKETS = re.compile(r"\[[^\]]*\]|\([^)]*\)|\{[^}]*\}|/[^/]*/")
_LABEL = re.compile(r"\[([^\]]{1,20})\]")
_ROMAN_SENSE = re.compile(r"^\s*[IVX]+\.\s+")  # "I. maska" (eng-pol numbers its senses in Roman numerals)
_NOT_A_SENSE = re.compile(r'^\s*(?:Synonyms?:|see:|Note:|"|\()')


def _b64_number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _B64[char]
    return value


@dataclass(frozen=True)
class Sense:
    """One numbered sense of an entry: its English translations in the dictionary's order, and its POS tags."""

    translations: tuple[str, ...]
    pos: frozenset[str]  # POS tags ("n", "adj", "masc" …) and usage labels in brackets ("[coll.]", "[zool.]")


@dataclass(frozen=True)
class Entry:
    """One dictionary entry: the headword as written and its senses."""

    headword: str
    pos: frozenset[str]  # tags on the headword line, e.g. {"n", "masc"} or {"adj"}
    senses: tuple[Sense, ...]


class DictdDictionary:
    """Look-ups in one dictd dictionary: the index through its SQLite copy, entries read on demand (thread-safe)."""

    def __init__(self, index_path: Path, data_path: Path, store: IndexStore | None = None) -> None:
        self.index_path = index_path
        self.data_path = data_path
        self.store = store or IndexStore(None)
        self._index: Index | None = None
        self._chunks: _Dictzip | None = None
        self._lock = threading.Lock()

    @classmethod
    def named(cls, folder: Path, name: str, store: IndexStore | None = None) -> DictdDictionary:
        """``folder/name.index`` with ``name.dict.dz`` (or ``name.dict``); FileNotFoundError names what is missing."""
        index = folder / f"{name}.index"
        data = next((p for p in (folder / f"{name}.dict.dz", folder / f"{name}.dict") if p.is_file()), None)
        if not index.is_file() or data is None:
            missing = index if not index.is_file() else folder / f"{name}.dict.dz"
            raise FileNotFoundError(str(missing))
        return cls(index, data, store)

    @property
    def name(self) -> str:
        return self.index_path.name.removesuffix(".index")

    def lookup(self, word: str) -> list[Entry]:
        """Every entry whose headword is ``word`` (case-insensitive), in the dictionary's order."""
        locations = self._table().rows("SELECT offset, length FROM headword WHERE key = ? ORDER BY seq", (_key(word),))
        return [_nfkc(parse_entry(self._read(offset, length))) for offset, length in locations]

    def __contains__(self, word: str) -> bool:
        return bool(self._table().rows("SELECT 1 FROM headword WHERE key = ? LIMIT 1", (_key(word),)))

    def entries(self) -> Iterator[Entry]:
        """Every entry, in the index's order (reads the whole dictionary: to invert an English-to-X one)."""
        locations = self._table().rows(
            "SELECT offset, length FROM headword WHERE key NOT LIKE '00database%' ORDER BY seq"
        )
        for offset, length in locations:
            yield _nfkc(parse_entry(self._read(offset, length)))

    def _table(self) -> Index:
        with self._lock:
            if self._index is None:
                self._index = self.store.open(self.name, [self.index_path], self._build_index)
            return self._index

    def _build_index(self, connection: sqlite3.Connection) -> None:
        connection.execute("CREATE TABLE headword (key TEXT NOT NULL, seq INTEGER, offset INTEGER, length INTEGER)")
        connection.executemany("INSERT INTO headword VALUES (?, ?, ?, ?)", _read_index(self.index_path))
        connection.execute("CREATE INDEX headword_key ON headword (key)")

    def _read(self, offset: int, length: int) -> str:
        with self._lock:
            if self.data_path.suffix != ".dz":
                with self.data_path.open("rb") as handle:
                    handle.seek(offset)
                    return handle.read(length).decode("utf-8", "replace")
            if self._chunks is None:
                self._chunks = _Dictzip(self.data_path)
            return self._chunks.read(offset, length).decode("utf-8", "replace")


def _key(word: str) -> str:
    # NFKC: Dutch headwords spell "ij" as the ligature "ĳ" (U+0133)
    return unicodedata.normalize("NFKC", word.strip()).lower()


def _read_index(path: Path) -> Iterator[tuple[str, int, int, int]]:
    """(key, line number, offset, length) for each line of a dictd index (malformed lines skipped)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or not parts[0].strip():
                continue
            try:
                offset, length = _b64_number(parts[1]), _b64_number(parts[2])
            except KeyError:
                continue  # a malformed line: skip it rather than lose the dictionary
            yield _key(parts[0]), number, offset, length


class _Dictzip:
    """Random access into a dictzip file through its chunk table (gzip FEXTRA subfield ``RA``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            header = handle.read(65_536 + 1024)
        if header[:2] != _GZIP_MAGIC:
            raise ValueError(f"{path} is not a gzip/dictzip file")
        flags = header[3]
        if not flags & _FEXTRA:
            raise ValueError(f"{path} is gzip without dictzip's chunk table; decompress it to {path.stem}")
        extra_length = struct.unpack_from("<H", header, 10)[0]
        self.chunk_length, sizes = _chunk_table(header[12 : 12 + extra_length], path)
        position = 12 + extra_length
        for flag in (_FNAME, _FCOMMENT):
            if flags & flag:
                position = header.index(b"\0", position) + 1
        if flags & _FHCRC:
            position += 2
        self.starts = [position]
        for size in sizes:
            self.starts.append(self.starts[-1] + size)
        self.cache: dict[int, bytes] = {}

    def read(self, offset: int, length: int) -> bytes:
        first, last = offset // self.chunk_length, (offset + length - 1) // self.chunk_length
        data = b"".join(self._chunk(i) for i in range(first, last + 1))
        start = offset - first * self.chunk_length
        return data[start : start + length]

    def _chunk(self, number: int) -> bytes:
        if number not in self.cache:
            if len(self.cache) > 64:  # a small cache: a request reads a few dozen entries
                self.cache.clear()
            with self.path.open("rb") as handle:
                handle.seek(self.starts[number])
                compressed = handle.read(self.starts[number + 1] - self.starts[number])
            self.cache[number] = zlib.decompressobj(-zlib.MAX_WBITS).decompress(compressed)
        return self.cache[number]


def _chunk_table(extra: bytes, path: Path) -> tuple[int, list[int]]:
    position = 0
    while position + 4 <= len(extra):
        ident, size = extra[position : position + 2], struct.unpack_from("<H", extra, position + 2)[0]
        if ident == b"RA":
            _version, chunk_length, count = struct.unpack_from("<HHH", extra, position + 4)
            return chunk_length, list(struct.unpack_from(f"<{count}H", extra, position + 10))
        position += 4 + size
    raise ValueError(f"{path} has a gzip extra field but no dictzip chunk table (RA)")


def _nfkc(entry: Entry) -> Entry:
    senses = tuple(Sense(tuple(unicodedata.normalize("NFKC", t) for t in s.translations), s.pos) for s in entry.senses)
    return Entry(unicodedata.normalize("NFKC", entry.headword), entry.pos, senses)


def parse_entry(text: str) -> Entry:
    """An entry's text -> :class:`Entry` (headword, POS tags, senses with their translations)."""
    lines = text.strip("\n").split("\n")
    head = lines[0]
    headword = _BRACKETS.sub("", _POS_TAG.sub("", head)).strip()
    head_pos = _pos_tags(head)
    senses: list[Sense] = []
    for line in lines[1:]:
        if not line.strip() or _NOT_A_SENSE.match(line):
            continue
        numbered = _SENSE_NUMBER.match(line)
        if not numbered and senses and not line.startswith(" "):
            # a line after the first sense that is neither numbered nor indented is a definition (pol-eng)
            continue
        body = _TRAILING_NUMBER.sub("", line[numbered.end() :] if numbered else line)
        translations, labels = _translations(body)
        if translations:
            senses.append(Sense(translations, (_pos_tags(body) or head_pos) | labels))
    return Entry(headword, head_pos, tuple(senses))


def _translations(body: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The translations of a sense line, and its usage labels ("[coll.]", "[slang]", "[zool.]", lower case)."""
    words = []
    labels: set[str] = set()
    for part in re.split(r"[,;]", _POS_TAG.sub("", body)):
        labels.update(f"[{label.strip().lower()}]" for label in _LABEL.findall(part))
        word = _ROMAN_SENSE.sub("", re.sub(r"\s+", " ", _BRACKETS.sub("", part))).strip(" .-\u2010")
        if word and len(word) <= 60 and not any(c.isdigit() for c in word):
            words.append(word)
    return tuple(words), frozenset(labels)


def _pos_tags(text: str) -> frozenset[str]:
    tags: set[str] = set()
    for group in _POS_TAG.findall(text):
        tags.update(tag.strip().lower() for tag in group.split(","))
    return frozenset(tags)
