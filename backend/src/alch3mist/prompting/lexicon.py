"""Words of one language -> English candidates, from Debian's FreeDict dictionaries and simplemma's lemmas.

For a word the lexicon tries, in order: the word as written, its lemma (simplemma: "geschmolzenem" ->
"geschmolzen", "złotej" -> "złoty"), a plural without its ending, and for German, Dutch and Swedish the two halves
of a compound ("Krokodilhaut" when the dictionary lacks it -> "Krokodil" + "Haut"). Each form is looked up in the
``X-eng`` dictionary and then in the English-to-X one read backwards (FreeDict's small dictionaries cover different
words in each direction: spa-eng lacks "vaca"'s neighbour "cristal" that eng-spa has, and so on).

Which candidate is meant is decided later (:mod:`.senses`), with English WordNet: this module only collects them,
with the part of speech the dictionary gives and where each came from.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import simplemma

from .dictd import DictdDictionary, Entry
from .grammar import Grammar

__all__ = ["PIVOTS", "Candidate", "DictionaryMissing", "Lexicon", "build_lexicons"]

logger = logging.getLogger(__name__)

_COMPOUND_LANGUAGES = frozenset({"de", "nl", "sv"})
_LINKING = ("", "s", "es", "n", "en", "e", "er")  # German / Dutch / Swedish Fugenelemente
_PLURAL_ENDINGS = ("es", "s", "en", "n", "e", "i", "a", "y", "ów", "ami", "ach")
_MIN_PART = 3
_MASCULINE: dict[str, tuple[tuple[str, str], ...]] = {
    "es": (("as", "o"), ("a", "o")), "pt": (("as", "o"), ("a", "o")), "it": (("e", "o"), ("a", "o")),
    "fr": (("ees", "e"), ("ee", "e"), ("es", ""), ("e", "")),
}  # fmt: skip
# Languages whose small X-eng dictionary is backed by a bigger one into a language with a big dictionary to English.
PIVOTS: dict[str, tuple[str, ...]] = {"es": ("de",), "fr": ("de",), "it": ("pl", "de"), "pt": ("de",), "nl": ("de",),
                                      "sv": ("de",)}  # fmt: skip
# Second opinions when a word has several translations: the same word through another language's dictionaries.
WITNESSES: dict[str, tuple[str, ...]] = {"de": ("fr", "nl", "es"), "pl": ("de",), **PIVOTS}


class DictionaryMissing(FileNotFoundError):
    """The language's FreeDict dictionary is not installed where the settings say."""


@dataclass(frozen=True)
class Candidate:
    """One English translation of a source word."""

    english: str
    pos: frozenset[str]  # the dictionary's tags for this sense ({"n"}, {"adj"}, {"v"} …), often empty
    rank: int  # position among the word's translations (0 = first sense, first word)
    direct: bool  # from the X-eng dictionary (True) or the English-to-X one read backwards (False)
    form: str  # the source form that was found (the word, its lemma, a compound part …)


class Lexicon:
    """English candidates for the words of one language (dictionaries read on first use, thread-safe)."""

    def __init__(self, grammar: Grammar, folder: Path, pivots: tuple[Lexicon, ...] = ()) -> None:
        self.grammar = grammar
        self.folder = folder
        self.pivots = pivots
        self.witness_lexicons: tuple[Lexicon, ...] = pivots
        self._direct: DictdDictionary | None = None
        self._inverse: dict[str, list[tuple[str, frozenset[str], int]]] | None = None
        self._to_pivot: dict[str, DictdDictionary | None] = {}
        self._from_pivot: dict[str, dict[str, list[tuple[str, frozenset[str], int]]]] = {}
        self._lock = threading.Lock()

    @property
    def package(self) -> str:
        return f"dict-freedict-{self.grammar.freedict}-eng"

    def check(self) -> None:
        """Raise :class:`DictionaryMissing` with what to install when the X-eng dictionary is absent."""
        self._dictionary()

    # --- look-ups ---------------------------------------------------------------------------------------------------

    def phrase(self, words: list[str]) -> list[Candidate]:
        """Candidates for a multi-word headword ("osito de peluche", "pieza de ajedrez"), as written only."""
        return self._candidates(" ".join(words), " ".join(words))

    def word(self, word: str) -> list[Candidate]:
        """Candidates for one word, trying its lemma, plural and compound parts when the word itself is unknown."""
        forms = self._forms(word)
        # every form in the X-eng dictionary ("dorada": the fish; its lemma "dorado": golden), then weaker sources
        found = [c for form in forms for c in self._direct_candidates(form)]
        if found:
            return found
        for look_up in (self._inverse_candidates, self._through_pivots):
            for form in forms:
                found = look_up(form)
                if found:
                    return found
        return self._compound(word)

    def direct(self, word: str) -> list[Candidate]:
        """Candidates from the X-eng dictionary only, for the word as written (a pivot language's headword)."""
        return [c for entry in self._dictionary().lookup(word) for c in _from_entry(entry, word, 0)]

    def knows(self, word: str) -> bool:
        """True when the dictionary or the lemmatiser knows the word (language-identification evidence)."""
        key = word.lower()
        return bool(self._direct_candidates(key)) or simplemma.is_known(key, lang=self.grammar.code)

    def lemma(self, word: str) -> str:
        return str(simplemma.lemmatize(word, lang=self.grammar.code))

    # --- forms ------------------------------------------------------------------------------------------------------

    def _forms(self, word: str) -> list[str]:
        forms = [word.lower()]
        lemma = self.lemma(word).lower()
        if lemma not in forms:
            forms.append(lemma)
        for feminine, masculine in _MASCULINE.get(self.grammar.code, ()):  # dictionaries list the masculine
            if word.lower().endswith(feminine):
                forms.append(word.lower()[: -len(feminine)] + masculine)
        for ending in _PLURAL_ENDINGS:
            if word.lower().endswith(ending) and len(word) - len(ending) >= _MIN_PART:
                forms.append(word.lower()[: -len(ending)])
        return forms

    def _compound(self, word: str) -> list[Candidate]:
        """A German/Dutch/Swedish compound as two known words: the English modifier + head ("crocodile skin")."""
        if self.grammar.code not in _COMPOUND_LANGUAGES or len(word) < 2 * _MIN_PART:
            return []
        key = word.lower()
        for cut in range(len(key) - _MIN_PART, _MIN_PART - 1, -1):  # the longest head first
            head = self._first_for(key[cut:])  # compounds: the X-eng dictionary only (fast, and precise enough)
            if head is None:
                continue
            for linking in _LINKING:
                stem = key[:cut]
                if linking and not stem.endswith(linking):
                    continue
                modifier = self._first_for(stem[: len(stem) - len(linking)] if linking else stem)
                if modifier is not None and len(stem) - len(linking) >= _MIN_PART:
                    english = f"{modifier.english} {head.english}"
                    return [Candidate(english, head.pos, 0, head.direct, word)]
        return []

    def _first_for(self, form: str) -> Candidate | None:
        for variant in self._forms(form):
            found = self._candidates(variant, variant)
            if found:
                return found[0]
        return None

    def witnesses(self, form: str) -> set[str]:
        """English words reached from ``form`` through the other languages' dictionaries (lower case)."""
        return {
            c.english.lower()
            for other in self.witness_lexicons
            for word in self._pivot_words(other, form)[:4]
            for c in other.direct(word)
        }

    # --- pivots -----------------------------------------------------------------------------------------------------

    def _through_pivots(self, form: str) -> list[Candidate]:
        """X -> pivot language (X-P, or P-X read backwards) -> English with the pivot's big dictionary.

        FreeDict's Spanish, French, Italian, Portuguese and Dutch dictionaries into English are small (3-11 k
        headwords); their dictionaries into German (or Italian's into Polish) are larger, and German's and Polish's
        into English are large (380 k, 36 k): "búho" -> "Uhu" -> eagle-owl, "pietra" -> "kamień" -> stone.
        """
        for pivot in self.pivots:
            words = self._pivot_words(pivot, form)
            found = [
                Candidate(c.english, c.pos, 2 * rank + c.rank, False, form)
                for rank, word in enumerate(words[:4])
                for c in pivot.direct(word)
            ]
            if found:
                return found
        return []

    def _pivot_words(self, pivot: Lexicon, form: str) -> list[str]:
        code = pivot.grammar.freedict
        with self._lock:
            if code not in self._to_pivot:
                name = f"freedict-{self.grammar.freedict}-{code}"
                try:
                    self._to_pivot[code] = DictdDictionary.named(self.folder, name)
                except FileNotFoundError:
                    self._to_pivot[code] = None
                self._from_pivot[code] = _invert(self.folder, f"freedict-{code}-{self.grammar.freedict}")
            to_pivot, from_pivot = self._to_pivot[code], self._from_pivot[code]
        words = [t for e in to_pivot.lookup(form) for s in e.senses for t in s.translations] if to_pivot else []
        return words or [english for english, _, _ in from_pivot.get(form, [])]

    # --- dictionaries -----------------------------------------------------------------------------------------------

    def _candidates(self, key: str, form: str) -> list[Candidate]:
        return self._direct_candidates(key) or self._inverse_candidates(key)

    def _direct_candidates(self, form: str) -> list[Candidate]:
        found: list[Candidate] = []
        for entry in self._dictionary().lookup(form):
            found.extend(_from_entry(entry, form, len(found)))
        return found

    def _inverse_candidates(self, form: str) -> list[Candidate]:
        return [
            Candidate(english, pos, rank, False, form)
            for rank, (english, pos, _) in enumerate(self._inverted().get(form.lower(), []))
        ]

    def _dictionary(self) -> DictdDictionary:
        with self._lock:
            if self._direct is None:
                name = f"freedict-{self.grammar.freedict}-eng"
                try:
                    self._direct = DictdDictionary.named(self.folder, name)
                except FileNotFoundError as missing:
                    raise DictionaryMissing(
                        f"the {self.grammar.code} -> English dictionary is not installed: {missing} is missing "
                        f"(install the Debian package {self.package} with scripts/install-system-deps.sh, or point "
                        "ALCH3MIST_DICTIONARY_DIR at a folder holding it)"
                    ) from None
            return self._direct

    def _inverted(self) -> dict[str, list[tuple[str, frozenset[str], int]]]:
        """The English-to-X dictionary read backwards: X word -> English headwords (when it is installed)."""
        with self._lock:
            if self._inverse is None:
                self._inverse = _invert(self.folder, f"freedict-eng-{self.grammar.freedict}")
            return self._inverse


def build_lexicons(grammars: dict[str, Grammar], folder: Path) -> dict[str, Lexicon]:
    """A lexicon for every language with a FreeDict code, wired to its pivots (built first: they have none)."""
    lexicons: dict[str, Lexicon] = {}
    for code, grammar in sorted(grammars.items(), key=lambda item: code_order(item[0])):
        if grammar.freedict:
            pivots = tuple(lexicons[p] for p in PIVOTS.get(code, ()) if p in lexicons)
            lexicons[code] = Lexicon(grammar, folder, pivots)
    for code, lexicon in lexicons.items():
        lexicon.witness_lexicons = tuple(lexicons[w] for w in WITNESSES.get(code, ()) if w in lexicons)
    return lexicons


def code_order(code: str) -> int:
    """Pivot languages first."""
    return 0 if any(code in pivots for pivots in PIVOTS.values()) else 1


def _from_entry(entry: Entry, form: str, start: int) -> list[Candidate]:
    candidates = []
    rank = start
    for sense in entry.senses:
        for english in sense.translations:
            candidates.append(Candidate(english, sense.pos | entry.pos, rank, True, form))
            rank += 1
    return candidates


def _invert(folder: Path, name: str) -> dict[str, list[tuple[str, frozenset[str], int]]]:
    try:
        dictionary = DictdDictionary.named(folder, name)
    except FileNotFoundError:
        logger.info("no %s dictionary in %s: only the X-eng direction is used", name, folder)
        return {}
    inverse: dict[str, list[tuple[str, frozenset[str], int]]] = {}
    for entry in dictionary.entries():
        english = entry.headword.strip()
        if not english or len(english) > 40:
            continue
        for sense_number, sense in enumerate(entry.senses):
            for translation in sense.translations:
                key = fold_keep_letters(translation)
                inverse.setdefault(key, []).append((english, sense.pos, sense_number))
    for key, values in inverse.items():  # the English headwords whose first sense is this word first
        values.sort(key=lambda value: value[2])
        inverse[key] = values
    return inverse


def fold_keep_letters(text: str) -> str:
    """Lower case, accents kept (dictionary headwords keep them): ``"Vaca "`` -> ``"vaca"``."""
    return " ".join(text.lower().split())
