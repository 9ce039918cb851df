"""English WordNet 3.0 (Debian's ``wordnet-base``, ``/usr/share/wordnet``), read by a small reader of ours.

The rewriter asks English three questions a bilingual dictionary does not answer:

* is this an English word at all (and of which part of speech)? — the strict check that nothing is left
  untranslated, and the noun / adjective decision when a dictionary gives no part of speech;
* how common is it? — the sum of its senses' tag counts in ``cntlist.rev`` (SemCor), to prefer "skin" over
  "hide" or "wood" over "xylem" among a dictionary's translations;
* is it a material, or a concrete thing? — the lexicographer file of its noun senses (``noun.substance``,
  ``noun.artifact``, ``noun.animal`` …) and whether a sense descends from "material", "fabric", "metal",
  "stone", "gem" (hypernym pointers), so "glass owl" is an owl of glass and "coffee" in "a cup of coffee" is not
  a material.

Files: ``index.{noun,adj,verb,adv}`` (lemma -> synset offsets, sorted), ``data.{noun,adj}`` (a synset per line at
its byte offset), ``{noun,adj,verb}.exc`` (irregular forms), ``cntlist.rev`` (sense key -> tag count).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["WordNet", "WordNetMissing"]

_POS_FILES = {"n": "noun", "a": "adj", "v": "verb", "r": "adv"}
# Lexicographer files (WordNet's lexnames) of nouns that name a thing one can model or a stuff it is made of.
LEX_ARTIFACT, LEX_ANIMAL, LEX_BODY, LEX_FOOD, LEX_OBJECT, LEX_PLANT, LEX_SUBSTANCE = 6, 5, 8, 13, 17, 20, 27
_CONCRETE_LEXNAMES = frozenset({LEX_ARTIFACT, LEX_ANIMAL, LEX_BODY, LEX_FOOD, LEX_OBJECT, LEX_PLANT, LEX_SUBSTANCE})
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


class WordNetMissing(FileNotFoundError):
    """The WordNet files are not where the settings say (install ``wordnet-base``)."""


@dataclass(frozen=True)
class _Synset:
    offset: int
    lexname: int
    words: tuple[str, ...]
    hypernyms: tuple[int, ...]


class WordNet:
    """Questions about English words; files are read on first use (thread-safe)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, tuple[int, ...]]] | None = None
        self._exceptions: dict[str, dict[str, str]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._plurals: dict[str, str] = {}

    def check(self) -> None:
        """Raise :class:`WordNetMissing` naming the folder when its files are not there."""
        if not (self.folder / "index.noun").is_file() or not (self.folder / "data.noun").is_file():
            raise WordNetMissing(
                f"English WordNet is not installed in {self.folder} (index.noun, data.noun): install the Debian "
                "package wordnet-base (scripts/install-system-deps.sh) or set ALCH3MIST_WORDNET_DIR"
            )

    # --- words ------------------------------------------------------------------------------------------------------

    def base_forms(self, word: str, pos: str) -> list[str]:
        """The WordNet lemmas ``word`` can be an inflection of, for ``pos`` in n / a / v / r (morphy)."""
        key = word.lower().replace(" ", "_")
        index = self._load()[pos]
        forms = [key] if key in index else []
        irregular = self._exceptions[pos].get(key)
        if irregular and irregular in index:
            forms.append(irregular)
        for suffix, ending in _SUFFIXES.get(pos, ()):
            if key.endswith(suffix) and len(key) > len(suffix) + 1:
                base = key[: -len(suffix)] + ending
                if base in index and base not in forms:
                    forms.append(base)
        return [form.replace("_", " ") for form in forms]

    def is_word(self, word: str, pos: str | None = None) -> bool:
        """True when ``word`` (or an inflection of it) is an English word (of ``pos`` when given)."""
        return any(self.base_forms(word, p) for p in ([pos] if pos else list(_POS_FILES)))

    def plural(self, noun: str) -> str:
        """English plural of ``noun`` (the exception list read backwards, then the spelling rules)."""
        self._load()
        irregular = self._plurals.get(noun.lower())
        if irregular:
            return irregular
        if noun.endswith(("s", "x", "z", "ch", "sh")):
            return noun + "es"
        if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
            return noun[:-1] + "ies"
        return noun + "s"

    def singular(self, noun: str) -> str:
        """The singular of a plural noun ("eyes" -> "eye", "woods" -> "wood"); other words unchanged."""
        key = noun.lower()
        others = [form for form in self.base_forms(key, "n") if form != key]
        return others[0] if others and key.endswith("s") else noun

    def frequency(self, word: str, pos: str | None = None) -> int:
        """How often ``word``'s senses were tagged in SemCor (0 for rare or unknown words)."""
        self._load()
        key = word.lower().replace(" ", "_")
        return sum(self._counts.get((key, p), 0) for p in ([pos] if pos else list(_POS_FILES)))

    # --- nouns ------------------------------------------------------------------------------------------------------

    def lexnames(self, noun: str) -> set[int]:
        """Lexicographer file numbers of the noun's senses (27 = substance, 6 = artifact, 5 = animal …)."""
        return {synset.lexname for synset in self._noun_synsets(noun)}

    def is_concrete(self, noun: str) -> bool:
        """A thing or a stuff (artifact, animal, plant, body part, food, natural object, substance)."""
        return bool(self.lexnames(noun) & _CONCRETE_LEXNAMES)

    def is_material(self, noun: str) -> bool:
        """A stuff things are made of: a substance sense, or a sense under material / fabric / metal / stone …"""
        synsets = self._noun_synsets(noun)
        if any(synset.lexname == LEX_SUBSTANCE and not self._is_food(synset) for synset in synsets):
            return True
        roots = self._material_roots()
        return any(self._descends_from(synset.offset, roots) for synset in synsets)

    def is_substance_first(self, noun: str) -> bool:
        """The noun's most frequent sense is a material (``gold`` yes, ``crocodile`` no, ``glass`` yes)."""
        synsets = self._noun_synsets(noun)
        return bool(synsets) and self.is_material_synset(synsets[0])

    def is_material_synset(self, synset: _Synset) -> bool:
        if synset.lexname == LEX_SUBSTANCE and not self._is_food(synset):
            return True
        return self._descends_from(synset.offset, self._material_roots())

    # --- reading ----------------------------------------------------------------------------------------------------

    def _noun_synsets(self, noun: str) -> list[_Synset]:
        offsets: list[int] = []
        for form in self.base_forms(noun, "n"):
            offsets.extend(o for o in self._load()["n"][form.replace(" ", "_")] if o not in offsets)
        return [_read_synset(self.folder / "data.noun", offset) for offset in offsets]

    def _is_food(self, synset: _Synset) -> bool:
        return self._descends_from(synset.offset, frozenset(self._first_offsets(("food", "beverage"))))

    def _descends_from(self, offset: int, roots: frozenset[int]) -> bool:
        return bool(_ancestors(self.folder / "data.noun", offset) & roots)

    def _material_roots(self) -> frozenset[int]:
        return frozenset(self._first_offsets(_MATERIAL_ROOTS))

    def _first_offsets(self, nouns: tuple[str, ...]) -> list[int]:
        index = self._load()["n"]
        return [index[noun][0] for noun in nouns if noun in index]

    def _load(self) -> dict[str, dict[str, tuple[int, ...]]]:
        with self._lock:
            if self._index is None:
                self.check()
                self._index = {pos: _read_index(self.folder / f"index.{name}") for pos, name in _POS_FILES.items()}
                self._exceptions = {p: _read_exceptions(self.folder / f"{n}.exc") for p, n in _POS_FILES.items()}
                self._counts = _read_counts(self.folder / "cntlist.rev")
                self._plurals = {base: form for form, base in self._exceptions["n"].items() if base != form}
            return self._index


def _read_index(path: Path) -> dict[str, tuple[int, ...]]:
    """``lemma pos synset_cnt p_cnt [ptr…] sense_cnt tagsense_cnt offset…`` -> lemma: offsets (most frequent first)."""
    index: dict[str, tuple[int, ...]] = {}
    if not path.is_file():
        return index
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" "):
                continue  # the licence header
            fields = line.split()
            synset_count = int(fields[2])
            index[fields[0]] = tuple(int(offset) for offset in fields[-synset_count:])
    return index


def _read_exceptions(path: Path) -> dict[str, str]:
    exceptions: dict[str, str] = {}
    if path.is_file():
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 2:
                    exceptions.setdefault(fields[0], fields[1])
    return exceptions


def _read_counts(path: Path) -> dict[tuple[str, str], int]:
    """``lemma%ss_type:lexfile:…  sense_number  tag_count`` summed per (lemma, pos)."""
    counts: dict[tuple[str, str], int] = {}
    if not path.is_file():
        return counts
    ss_types = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            key, _, count = line.split()
            lemma, _, rest = key.partition("%")
            pos = ss_types.get(rest[:1], "n")
            counts[(lemma, pos)] = counts.get((lemma, pos), 0) + int(count)
    return counts


@lru_cache(maxsize=4096)
def _read_synset(path: Path, offset: int) -> _Synset:
    """``offset lexfile ss_type w_cnt word lex_id … p_cnt [symbol offset pos source/target]… | gloss``."""
    with path.open("rb") as handle:
        handle.seek(offset)
        fields = handle.readline().decode("utf-8").split(" | ", 1)[0].split()
    word_count = int(fields[3], 16)
    words = tuple(fields[4 + 2 * i].lower().replace("_", " ") for i in range(word_count))
    position = 4 + 2 * word_count
    pointer_count = int(fields[position])
    hypernyms = []
    for i in range(pointer_count):
        symbol, target = fields[position + 1 + 4 * i], fields[position + 2 + 4 * i]
        if symbol in ("@", "@i"):
            hypernyms.append(int(target))
    return _Synset(offset, int(fields[1]), words, tuple(hypernyms))


@lru_cache(maxsize=4096)
def _ancestors(path: Path, offset: int) -> frozenset[int]:
    """The synset and every hypernym above it."""
    seen = {offset}
    frontier = [offset]
    while frontier:
        for parent in _read_synset(path, frontier.pop()).hypernyms:
            if parent not in seen:
                seen.add(parent)
                frontier.append(parent)
    return frozenset(seen)
