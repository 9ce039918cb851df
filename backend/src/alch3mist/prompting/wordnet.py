"""English WordNet 3.0 (Debian's ``wordnet-base``, ``/usr/share/wordnet``), read by a small reader of ours.

The rewriter asks English questions a bilingual dictionary does not answer:

* is this an English word at all (and of which part of speech)? — the strict check that nothing is left
  untranslated, and the noun / adjective decision when a dictionary gives no part of speech;
* which of its senses are things one can model (artifact, animal, plant, body part, natural object), which are
  materials (``noun.substance``, or a descendant of material / fabric / metal / stone …), and how often each sense
  was tagged in SemCor (``cntlist.rev``): "Krone" is a crown, not a top, because top's thing-senses are never
  tagged while crown's are; French "vase" is a vase, not mud, because mud is only a substance;
* what a sense is about (its gloss and hypernyms), to relate a feature to the object: "Federn" on an owl are
  feathers ("… the external covering of birds"), not springs.

Files: ``index.{noun,adj,verb,adv}`` (lemma -> synset offsets, in sense order), ``data.noun`` (a synset per line
at its byte offset, read on demand), ``{noun,adj,verb}.exc`` (irregular forms), ``cntlist.rev`` (sense key ->
tag count). The indexes and counts are copied once into a SQLite table (:mod:`.store`): nothing is loaded at start.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .store import Index, IndexStore

__all__ = ["NounSense", "Synset", "WordNet", "WordNetMissing"]

_POS_FILES = {"n": "noun", "a": "adj", "v": "verb", "r": "adv"}
# Lexicographer files (WordNet's lexnames) of nouns that name a thing one can model or a stuff it is made of.
LEX_ARTIFACT, LEX_ANIMAL, LEX_BODY, LEX_FOOD, LEX_OBJECT, LEX_PERSON, LEX_PLANT, LEX_SUBSTANCE = (
    6, 5, 8, 13, 17, 18, 20, 27
)  # fmt: skip
THING_LEXNAMES = frozenset({LEX_ARTIFACT, LEX_ANIMAL, LEX_BODY, LEX_FOOD, LEX_OBJECT, LEX_PERSON, LEX_PLANT})
_CONCRETE_LEXNAMES = THING_LEXNAMES | {LEX_SUBSTANCE}
# A noun is a material when one of its senses is a substance or descends from one of these (first senses).
_MATERIAL_ROOTS = (
    "material",
    "fabric",
    "metal",
    "stone",
    "gem",
    "paper",
    "plastic",
    "fur",
    "leather",
    "wood",
    "ceramic",
)
# Suffix rules of WordNet's morphy (morph.c), for inflected forms not in the exception lists.
_SUFFIXES = {
    "n": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
          ("ies", "y")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
}  # fmt: skip
_SS_TYPES = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}  # sense keys' ss_type digit -> index file


class WordNetMissing(FileNotFoundError):
    """The WordNet files are not where the settings say (install ``wordnet-base``)."""


@dataclass(frozen=True)
class Synset:
    """One noun synset: its lexicographer file, words, hypernyms and gloss."""

    offset: int
    lexname: int
    words: tuple[str, ...]
    hypernyms: tuple[int, ...]
    gloss: str


@dataclass(frozen=True)
class NounSense:
    """One sense of a noun: its synset and how often this sense of the noun was tagged in SemCor."""

    synset: Synset
    count: int


class WordNet:
    """Questions about English words; the index is opened on first use (thread-safe)."""

    def __init__(self, folder: Path, store: IndexStore | None = None) -> None:
        self.folder = folder
        self.store = store or IndexStore(None)
        self._lock = threading.Lock()
        self._index: Index | None = None
        self._exceptions: dict[str, dict[str, str]] = {}
        self._plurals: dict[str, str] = {}
        self._entries: dict[tuple[str, str], tuple[tuple[int, ...], tuple[int, ...]] | None] = {}

    def check(self) -> None:
        """Raise :class:`WordNetMissing` naming the folder when its files are not there."""
        if not (self.folder / "index.noun").is_file() or not (self.folder / "data.noun").is_file():
            raise WordNetMissing(
                f"English WordNet is not installed in {self.folder} (index.noun, data.noun): install the Debian "
                "package wordnet-base (scripts/install-system-deps.sh) or set ALCH3MIST_WORDNET_DIR"
            )

    def warm(self) -> None:
        """Open (or build once) the look-up index now."""
        self._table()

    # --- words ------------------------------------------------------------------------------------------------------

    def base_forms(self, word: str, pos: str) -> list[str]:
        """The WordNet lemmas ``word`` can be an inflection of, for ``pos`` in n / a / v / r (morphy)."""
        key = word.lower().replace(" ", "_")
        forms = [key] if self._entry(pos, key) else []
        irregular = self._exceptions_of(pos).get(key)
        if irregular and self._entry(pos, irregular) and irregular not in forms:
            forms.append(irregular)
        for suffix, ending in _SUFFIXES.get(pos, ()):
            if key.endswith(suffix) and len(key) > len(suffix) + 1:
                base = key[: -len(suffix)] + ending
                if base not in forms and self._entry(pos, base):
                    forms.append(base)
        return [form.replace("_", " ") for form in forms]

    def is_word(self, word: str, pos: str | None = None) -> bool:
        """True when ``word`` (or an inflection of it) is an English word (of ``pos`` when given)."""
        return any(self.base_forms(word, p) for p in ([pos] if pos else list(_POS_FILES)))

    def plural(self, noun: str) -> str:
        """English plural of ``noun`` (the exception list read backwards, then the spelling rules)."""
        self._exceptions_of("n")
        irregular = self._plurals.get(noun.lower())
        if irregular:
            return irregular
        if noun.endswith(("s", "x", "z", "ch", "sh")):
            return noun + "es"
        if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
            return noun[:-1] + "ies"
        return noun + "s"

    def singular(self, noun: str) -> str:
        """The singular of a plural noun ("eyes" -> "eye", "teeth" -> "tooth"); other words unchanged."""
        key = noun.lower()
        irregular = self._exceptions_of("n").get(key)
        if irregular and irregular != key and self._entry("n", irregular):
            return irregular
        others = [form for form in self.base_forms(key, "n") if form != key]
        return others[0] if others and key.endswith("s") else noun

    def is_plural(self, noun: str) -> bool:
        """A plural ("feathers", "eyes", "stripes": a plural even where WordNet also lists it), not "glass"."""
        return self.singular(noun).lower() != noun.lower()

    def frequency(self, word: str, pos: str | None = None) -> int:
        """How often ``word``'s senses were tagged in SemCor (0 for rare or unknown words)."""
        total = 0
        for p in [pos] if pos else list(_POS_FILES):
            entry = self._entry(p, word.lower().replace(" ", "_"))
            total += sum(entry[1]) if entry else 0
        return total

    def past_participle(self, verb: str) -> str:
        """The past participle: "carve" -> carved, "weave" -> woven (verb.exc read backwards, then the rules)."""
        key = verb.lower()
        participles = [form for form, base in self._exceptions_of("v").items() if base == key and form.endswith("n")]
        if participles:
            return min(participles, key=len)
        if key.endswith("e"):
            return key + "d"
        if key.endswith("y") and key[-2:-1] not in ("a", "e", "i", "o", "u"):
            return key[:-1] + "ied"
        return key + "ed"

    # --- nouns ------------------------------------------------------------------------------------------------------

    def noun_senses(self, noun: str) -> list[NounSense]:
        """The senses of ``noun`` (every base form: "feathers" -> feather), most frequent first, with tag counts."""
        senses: list[NounSense] = []
        seen: set[int] = set()
        for form in self.base_forms(noun, "n"):
            entry = self._entry("n", form.replace(" ", "_"))
            if entry is None:
                continue
            for offset, count in zip(*entry, strict=True):
                if offset not in seen:
                    seen.add(offset)
                    senses.append(NounSense(self.synset(offset), count))
        return senses

    def synset(self, offset: int) -> Synset:
        return _read_synset(self.folder / "data.noun", offset)

    def ancestors(self, offset: int) -> frozenset[int]:
        """The synset and every hypernym above it."""
        return _ancestors(self.folder / "data.noun", offset)

    def lexnames(self, noun: str) -> set[int]:
        """Lexicographer file numbers of the noun's senses (27 = substance, 6 = artifact, 5 = animal …)."""
        return {sense.synset.lexname for sense in self.noun_senses(noun)}

    def is_concrete(self, noun: str) -> bool:
        """A thing or a stuff (artifact, animal, plant, body part, food, natural object, substance)."""
        return bool(self.lexnames(noun) & _CONCRETE_LEXNAMES)

    def is_material(self, noun: str) -> bool:
        """A stuff things are made of: a substance sense, or a sense under material / fabric / metal / stone …"""
        return any(self.is_material_synset(sense.synset) for sense in self.noun_senses(noun))

    def is_substance_first(self, noun: str) -> bool:
        """The noun's most frequent sense is a material (``gold`` yes, ``crocodile`` no, ``glass`` yes)."""
        senses = self.noun_senses(noun)
        return bool(senses) and self.is_material_synset(senses[0].synset)

    def is_material_synset(self, synset: Synset) -> bool:
        if synset.lexname == LEX_SUBSTANCE and not self._is_food(synset):
            return True
        return bool(self.ancestors(synset.offset) & self._material_roots())

    def _is_food(self, synset: Synset) -> bool:
        return bool(self.ancestors(synset.offset) & frozenset(self._first_offsets(("food", "beverage"))))

    def _material_roots(self) -> frozenset[int]:
        return frozenset(self._first_offsets(_MATERIAL_ROOTS))

    def _first_offsets(self, nouns: tuple[str, ...]) -> list[int]:
        return [entry[0][0] for noun in nouns if (entry := self._entry("n", noun))]

    # --- reading ----------------------------------------------------------------------------------------------------

    def _entry(self, pos: str, key: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(synset offsets, tag counts) of a lemma, in sense order; None when WordNet lacks it."""
        if (pos, key) in self._entries:
            return self._entries[(pos, key)]
        rows = self._table().rows("SELECT offsets, counts FROM lemma WHERE pos = ? AND lemma = ?", (pos, key))
        entry = None
        if rows:
            entry = (tuple(int(o) for o in rows[0][0].split()), tuple(int(c) for c in rows[0][1].split()))
        if len(self._entries) > 200_000:  # a long-running service meets arbitrary words: keep the memo bounded
            self._entries.clear()
        self._entries[(pos, key)] = entry
        return entry

    def _table(self) -> Index:
        with self._lock:
            if self._index is None:
                self.check()
                sources = [self.folder / f"index.{name}" for name in _POS_FILES.values()]
                sources = [path for path in sources if path.is_file()]
                counts = self.folder / "cntlist.rev"
                if counts.is_file():
                    sources.append(counts)
                self._index = self.store.open("wordnet", sources, self._build)
            return self._index

    def _build(self, connection: sqlite3.Connection) -> None:
        counts = _read_counts(self.folder / "cntlist.rev")
        connection.execute(
            "CREATE TABLE lemma (pos TEXT, lemma TEXT, offsets TEXT, counts TEXT, PRIMARY KEY (pos, lemma)) "
            "WITHOUT ROWID"
        )
        for pos, name in _POS_FILES.items():
            rows = (
                (
                    pos,
                    lemma,
                    " ".join(map(str, offsets)),
                    " ".join(str(counts.get((lemma, pos, n + 1), 0)) for n in range(len(offsets))),
                )
                for lemma, offsets in _read_index(self.folder / f"index.{name}")
            )
            connection.executemany("INSERT OR IGNORE INTO lemma VALUES (?, ?, ?, ?)", rows)

    def _exceptions_of(self, pos: str) -> dict[str, str]:
        with self._lock:
            if not self._exceptions:
                self._exceptions = {p: _read_exceptions(self.folder / f"{n}.exc") for p, n in _POS_FILES.items()}
                self._plurals = {base: form for form, base in self._exceptions["n"].items() if base != form}
            return self._exceptions[pos]


def _read_index(path: Path) -> Iterator[tuple[str, tuple[int, ...]]]:
    """``lemma pos synset_cnt p_cnt [ptr…] sense_cnt tagsense_cnt offset…`` -> (lemma, offsets in sense order)."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" "):
                continue  # the licence header
            fields = line.split()
            synset_count = int(fields[2])
            yield fields[0], tuple(int(offset) for offset in fields[-synset_count:])


def _read_exceptions(path: Path) -> dict[str, str]:
    exceptions: dict[str, str] = {}
    if path.is_file():
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 2:
                    exceptions.setdefault(fields[0], fields[1])
    return exceptions


def _read_counts(path: Path) -> dict[tuple[str, str, int], int]:
    """``lemma%ss_type:lexfile:…  sense_number  tag_count`` -> (lemma, pos, sense number): tag count."""
    counts: dict[tuple[str, str, int], int] = {}
    if not path.is_file():
        return counts
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            key, sense_number, count = line.split()
            lemma, _, rest = key.partition("%")
            pos = _SS_TYPES.get(rest[:1], "n")
            index = (lemma, pos, int(sense_number))
            counts[index] = counts.get(index, 0) + int(count)
    return counts


@lru_cache(maxsize=16384)
def _read_synset(path: Path, offset: int) -> Synset:
    """``offset lexfile ss_type w_cnt word lex_id … p_cnt [symbol offset pos source/target]… | gloss``."""
    with path.open("rb") as handle:
        handle.seek(offset)
        line = handle.readline().decode("utf-8")
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    word_count = int(fields[3], 16)
    words = tuple(fields[4 + 2 * i].lower().replace("_", " ") for i in range(word_count))
    position = 4 + 2 * word_count
    pointer_count = int(fields[position])
    hypernyms = []
    for i in range(pointer_count):
        symbol, target = fields[position + 1 + 4 * i], fields[position + 2 + 4 * i]
        if symbol in ("@", "@i"):
            hypernyms.append(int(target))
    return Synset(offset, int(fields[1]), words, tuple(hypernyms), gloss.strip())


@lru_cache(maxsize=16384)
def _ancestors(path: Path, offset: int) -> frozenset[int]:
    seen = {offset}
    frontier = [offset]
    while frontier:
        for parent in _read_synset(path, frontier.pop()).hypernyms:
            if parent not in seen:
                seen.add(parent)
                frontier.append(parent)
    return frozenset(seen)
