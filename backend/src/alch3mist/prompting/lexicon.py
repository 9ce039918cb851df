"""Words of one language -> English candidates, from Debian's FreeDict dictionaries and simplemma's lemmas.

For a word the lexicon collects English translations from every route it has, for the word as written and for its
other forms (simplemma's lemma: "geschmolzenem" -> "geschmolzen", "złotej" -> "złoty"; the masculine the
dictionaries list: "dorada" -> "dorado"; the spelling without accents some dictionaries use: "búho" -> "buho"):

* ``direct``: the X-eng dictionary;
* ``inverse``: the English-to-X dictionary read backwards (FreeDict's small dictionaries cover different words in
  each direction);
* through another language ("de", "pl", "fr" …): X -> that language (X-P, or P-X read backwards) -> English with
  its own dictionaries. FreeDict's Spanish, French, Italian, Portuguese, Dutch and Swedish dictionaries into
  English are small (3-11 k headwords); their dictionaries into German (or Italian's into Polish) are larger, and
  German's and Polish's into English are large (380 k, 36 k): "vaso" -> "wazon" -> vase. German's own words go
  through French, Dutch and Spanish, as second opinions on its long entries.

A translation several routes agree on is more likely the meant one; which candidate is meant is decided later
(:mod:`.senses`, with English WordNet): this module only collects them, each with its route, rank and the part of
speech the dictionary gives. Only when no route knows the word are its plural stem and (de, nl, sv) the two halves
of a compound tried ("Krokodilhaut" -> "Krokodil" + "Haut").

The dictionaries' indexes and the inverted dictionaries are SQLite tables built once (:mod:`.store`); simplemma's
lemma tables are marisa tries cached on disk by simplemma's own ``TrieDictionaryFactory``.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from simplemma import Lemmatizer
from simplemma.__metadata__ import __version__ as SIMPLEMMA_VERSION
from simplemma.strategies import DefaultStrategy, DictionaryLookupStrategy
from simplemma.strategies.dictionaries import DEFAULT_DICTIONARY_FACTORY, DictionaryFactory, TrieDictionaryFactory

from .dictd import DictdDictionary, Entry
from .grammar import Grammar
from .store import Index, IndexStore
from .text import fold

__all__ = ["DIRECT", "INVERSE", "ROUTES", "Candidate", "DictionaryMissing", "Lemmas", "Lexicon", "build_lexicons"]

logger = logging.getLogger(__name__)

DIRECT, INVERSE = "direct", "inverse"
_COMPOUND_LANGUAGES = frozenset({"de", "nl", "sv"})
_LINKING = ("", "s", "es", "n", "en", "e", "er")  # German / Dutch / Swedish Fugenelemente
_PLURAL_ENDINGS = ("es", "s", "en", "n", "e", "i", "a", "y", "ów", "ami", "ach")
_MIN_PART = 3
_ROUTE_WORDS = 6  # words of the other language followed per route
_MASCULINE: dict[str, tuple[tuple[str, str], ...]] = {
    "es": (("as", "o"), ("a", "o")), "pt": (("as", "o"), ("a", "o")), "it": (("e", "o"), ("a", "o")),
    "fr": (("ees", "e"), ("ee", "e"), ("es", ""), ("e", "")),
}  # fmt: skip
# Regular past participles -> infinitives, for the participles simplemma leaves as they are ("soplado" -> soplar,
# "soufflé" -> souffler, "gehämmert" -> hämmern): the dictionaries list verbs, and a participle is read as the English
# participle of the verb's translation ("blown", "hammered") by the parser.
_PARTICIPLES: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    code: tuple((re.compile(pattern), replacement) for pattern, replacement in rules)
    for code, rules in {
        "es": ((r"ad[oa]s?$", "ar"), (r"id[oa]s?$", "ir"), (r"id[oa]s?$", "er")),
        "pt": ((r"ad[oa]s?$", "ar"), (r"id[oa]s?$", "ir"), (r"id[oa]s?$", "er")),
        "it": ((r"at[oaie]$", "are"), (r"it[oaie]$", "ire"), (r"ut[oaie]$", "ere")),
        "fr": ((r"ée?s?$", "er"), (r"ie?s?$", "ir"), (r"ue?s?$", "re")),
        "de": ((r"^ge(\w{2,})te?[mnrs]?$", r"\1en"), (r"^ge(\w{2,})te?[mnrs]?$", r"\1n")),
        "nl": ((r"^ge(\w{2,})[dt]e?$", r"\1en"),),
        "sv": ((r"ade?$", "a"), (r"at$", "a")),
    }.items()
}  # fmt: skip
_INFINITIVE_ENDINGS = {
    "es": ("ar", "er", "ir"), "pt": ("ar", "er", "ir"), "it": ("are", "ere", "ire"), "fr": ("er", "ir", "re"),
    "de": ("en", "rn", "ln"), "nl": ("en",), "sv": ("a",), "pl": ("ć",),
}  # fmt: skip
# The other languages each language's words are also translated through (their dictionaries to English are larger,
# or give a second opinion).
ROUTES: dict[str, tuple[str, ...]] = {"es": ("de",), "fr": ("de",), "it": ("pl", "de"), "pt": ("de",), "nl": ("de",),
                                      "sv": ("de",), "de": ("fr", "nl", "es"), "pl": ("de",)}  # fmt: skip


class DictionaryMissing(FileNotFoundError):
    """The language's FreeDict dictionary is not installed where the settings say."""


@dataclass(frozen=True)
class Candidate:
    """One English translation of a source word, and how it was found."""

    english: str
    pos: frozenset[str]  # the dictionary's tags for this sense ({"n"}, {"adj"}, {"v"} …), often empty
    rank: int  # position within its route (0 = first sense, first word)
    route: str  # DIRECT, INVERSE, or the code of the language it was translated through
    form: str  # the source form that was found (the word, its lemma, a compound part …)

    @property
    def direct(self) -> bool:
        return self.route == DIRECT


class Lemmas:
    """simplemma's lemmatiser, its tables cached as tries under ``folder`` (None: simplemma's in-memory tables)."""

    def __init__(self, folder: Path | None) -> None:
        factory: DictionaryFactory = DEFAULT_DICTIONARY_FACTORY
        if folder is not None:
            cache = folder / f"simplemma-{SIMPLEMMA_VERSION}"
            factory = TrieDictionaryFactory(cache_max_size=16, disk_cache_dir=str(cache))
        self._factory = factory
        self._lemmatizer = Lemmatizer(lemmatization_strategy=DefaultStrategy(dictionary_factory=factory))
        self._lookup = DictionaryLookupStrategy(factory)
        self._lock = threading.Lock()

    def lemma(self, word: str, language: str) -> str:
        with self._lock:  # the first call of a language builds or reads its table
            return str(self._lemmatizer.lemmatize(word, language))

    def is_known(self, word: str, language: str) -> bool:
        with self._lock:
            return self._lookup.get_lemma(word, language) is not None

    def warm(self, language: str) -> None:
        with self._lock:
            self._factory.get_dictionary(language)


class Lexicon:
    """English candidates for the words of one language (dictionaries opened on first use, thread-safe)."""

    def __init__(self, grammar: Grammar, folder: Path, store: IndexStore, lemmas: Lemmas) -> None:
        self.grammar = grammar
        self.folder = folder
        self.store = store
        self.lemmas = lemmas
        self.routes: tuple[Lexicon, ...] = ()
        self._direct: DictdDictionary | None = None
        self._inverse: Index | None = None
        self._to_route: dict[str, DictdDictionary | None] = {}
        self._from_route: dict[str, Index] = {}
        self._lock = threading.Lock()

    @property
    def package(self) -> str:
        return f"dict-freedict-{self.grammar.freedict}-eng"

    def check(self) -> None:
        """Raise :class:`DictionaryMissing` with what to install when the X-eng dictionary is absent."""
        self._dictionary()

    def warm(self) -> None:
        """Open (or build once) this language's indexes and lemma table, and those of its routes."""
        self.lemmas.warm(self.grammar.code)
        self.knows("warm")
        self._inverted()
        for route in self.routes:
            self._route_tables(route)
            route.check()
            route._inverted()

    # --- look-ups ---------------------------------------------------------------------------------------------------

    def phrase(self, words: list[str]) -> list[Candidate]:
        """Candidates for a multi-word headword ("osito de peluche", "pieza de ajedrez"), as written only."""
        return self.english_of(" ".join(words))

    def word(self, word: str) -> list[Candidate]:
        """Candidates for one word from every route, for the word and its forms; then its plural stem and parts."""
        forms = self._forms(word)
        found = [c for form in forms for c in self.english_of(form)]
        for route in self.routes:  # every form: "dorada" is a fish through German, its masculine "dorado" golden
            found.extend(c for form in forms for c in self._through(route, form))
        if found:
            return found
        for stem in self._stems(word):
            found = self.english_of(stem) or [c for route in self.routes for c in self._through(route, stem)]
            if found:
                return found
        return self._compound(word)

    def english_of(self, form: str) -> list[Candidate]:
        """This language's own translations of ``form`` as written: the X-eng entry, then the eng-X read backwards."""
        return self._direct_candidates(form) + self._inverse_candidates(form)

    def knows(self, word: str) -> bool:
        """True when the dictionary or the lemmatiser knows the word (language-identification evidence)."""
        key = word.lower()
        return key in self._dictionary() or self.lemmas.is_known(key, self.grammar.code)

    def lemma(self, word: str) -> str:
        return self.lemmas.lemma(word, self.grammar.code)

    def infinitives(self, word: str) -> set[str]:
        """The verbs ``word`` can be a participle of: its lemma when that is an infinitive, and the regular rules."""
        key = word.lower()
        found = {rule.sub(infinitive, key) for rule, infinitive in _PARTICIPLES.get(self.grammar.code, ())
                 if rule.search(key)}  # fmt: skip
        lemma = self.lemma(word).lower()
        if lemma != key and lemma.endswith(_INFINITIVE_ENDINGS.get(self.grammar.code, ())):
            found.add(lemma)
        return found | {fold(form) for form in found}

    # --- forms ------------------------------------------------------------------------------------------------------

    def _forms(self, word: str) -> list[str]:
        key = word.lower()
        forms = [key, self.lemma(word).lower()]
        for feminine, masculine in _MASCULINE.get(self.grammar.code, ()):  # dictionaries list the masculine
            if key.endswith(feminine):
                forms.append(key[: -len(feminine)] + masculine)
        forms.extend(sorted(self.infinitives(word)))
        forms.extend([fold(form) for form in forms])  # "búho": spa-eng spells it "buho"
        return list(dict.fromkeys(forms))

    def _stems(self, word: str) -> list[str]:
        key = word.lower()
        return [key[: -len(e)] for e in _PLURAL_ENDINGS if key.endswith(e) and len(key) - len(e) >= _MIN_PART]

    def _compound(self, word: str) -> list[Candidate]:
        """A German/Dutch/Swedish compound as two known words: the English modifier + head ("crocodile skin")."""
        if self.grammar.code not in _COMPOUND_LANGUAGES or len(word) < 2 * _MIN_PART:
            return []
        key = word.lower()
        for cut in range(len(key) - _MIN_PART, _MIN_PART - 1, -1):  # the longest head first
            head = self._first_for(key[cut:])  # compounds: this language's dictionaries only (fast, precise enough)
            if head is None:
                continue
            for linking in _LINKING:
                stem = key[:cut]
                if linking and not stem.endswith(linking):
                    continue
                modifier = self._first_for(stem[: len(stem) - len(linking)] if linking else stem)
                if modifier is not None and len(stem) - len(linking) >= _MIN_PART:
                    english = f"{modifier.english} {head.english}"
                    return [Candidate(english, head.pos, 0, head.route, word)]
        return []

    def _first_for(self, form: str) -> Candidate | None:
        for variant in [form.lower(), self.lemma(form).lower(), *self._stems(form)]:
            found = self.english_of(variant)
            if found:
                return found[0]
        return None

    # --- routes through other languages -----------------------------------------------------------------------------

    def _through(self, route: Lexicon, form: str) -> list[Candidate]:
        """X -> the route's language (X-P, or P-X read backwards) -> English with that language's dictionaries."""
        words = self._route_words(route, form)
        return [
            Candidate(c.english, c.pos, 2 * rank + c.rank, route.grammar.code, form)
            for rank, word in enumerate(words[:_ROUTE_WORDS])
            for c in route.english_of(word)
        ]

    def _route_words(self, route: Lexicon, form: str) -> list[str]:
        """The route language's words for ``form``: the first word of every sense first, then the others."""
        to_route, from_route = self._route_tables(route)
        senses = [s.translations for e in to_route.lookup(form) for s in e.senses] if to_route else []
        if not senses:
            rows = from_route.rows("SELECT english FROM inverse WHERE key = ? ORDER BY sense, position", (form,))
            return list(dict.fromkeys(row[0] for row in rows))
        firsts = [sense[0] for sense in senses if sense]
        return list(dict.fromkeys([*firsts, *(word for sense in senses for word in sense)]))

    def _route_tables(self, route: Lexicon) -> tuple[DictdDictionary | None, Index]:
        code = route.grammar.freedict
        with self._lock:
            if code not in self._to_route:
                try:
                    name = f"freedict-{self.grammar.freedict}-{code}"
                    self._to_route[code] = DictdDictionary.named(self.folder, name, self.store)
                except FileNotFoundError:
                    self._to_route[code] = None
                self._from_route[code] = _inverted(self.folder, f"freedict-{code}-{self.grammar.freedict}", self.store)
            return self._to_route[code], self._from_route[code]

    # --- this language's dictionaries -------------------------------------------------------------------------------

    def _direct_candidates(self, form: str) -> list[Candidate]:
        found: list[Candidate] = []
        for entry in self._dictionary().lookup(form):
            found.extend(_from_entry(entry, form, len(found)))
        return found

    def _inverse_candidates(self, form: str) -> list[Candidate]:
        rows = self._inverted().rows(
            "SELECT english, pos FROM inverse WHERE key = ? ORDER BY sense, position, seq", (form.lower(),)
        )
        return [
            Candidate(english, frozenset(pos.split()), rank, INVERSE, form) for rank, (english, pos) in enumerate(rows)
        ]

    def _dictionary(self) -> DictdDictionary:
        with self._lock:
            if self._direct is None:
                name = f"freedict-{self.grammar.freedict}-eng"
                try:
                    self._direct = DictdDictionary.named(self.folder, name, self.store)
                except FileNotFoundError as missing:
                    raise DictionaryMissing(
                        f"the {self.grammar.code} -> English dictionary is not installed: {missing} is missing "
                        f"(install the Debian package {self.package} with scripts/install-system-deps.sh, or point "
                        "ALCH3MIST_DICTIONARY_DIR at a folder holding it)"
                    ) from None
            return self._direct

    def _inverted(self) -> Index:
        """The English-to-X dictionary read backwards: X word -> English headwords (empty when not installed)."""
        with self._lock:
            if self._inverse is None:
                self._inverse = _inverted(self.folder, f"freedict-eng-{self.grammar.freedict}", self.store)
            return self._inverse


def build_lexicons(grammars: dict[str, Grammar], folder: Path, store: IndexStore, lemmas: Lemmas) -> dict[str, Lexicon]:
    """A lexicon for every language with a FreeDict code, wired to the lexicons it translates through."""
    lexicons = {code: Lexicon(g, folder, store, lemmas) for code, g in grammars.items() if g.freedict}
    for code, lexicon in lexicons.items():
        lexicon.routes = tuple(lexicons[r] for r in ROUTES.get(code, ()) if r in lexicons)
    return lexicons


def _from_entry(entry: Entry, form: str, start: int) -> list[Candidate]:
    candidates = []
    rank = start
    for sense in entry.senses:
        for english in sense.translations:
            candidates.append(Candidate(english, sense.pos | entry.pos, rank, DIRECT, form))
            rank += 1
    return candidates


def _inverted(folder: Path, name: str, store: IndexStore) -> Index:
    """The dictionary ``name`` read backwards (translation -> headwords), as a SQLite table (empty when absent)."""
    try:
        dictionary = DictdDictionary.named(folder, name, store)
    except FileNotFoundError:
        logger.info("no %s dictionary in %s: it is not read backwards", name, folder)
        return IndexStore(None).open(f"{name}-absent", [], _empty_inverse)

    def build(connection: sqlite3.Connection) -> None:
        _empty_inverse(connection)
        rows = (
            (" ".join(translation.lower().split()), entry.headword.strip(), " ".join(sorted(sense.pos)), number,
             position, seq)
            for seq, entry in enumerate(dictionary.entries())
            if entry.headword.strip() and len(entry.headword.strip()) <= 40
            for number, sense in enumerate(entry.senses)
            for position, translation in enumerate(sense.translations)
        )  # fmt: skip
        connection.executemany("INSERT INTO inverse VALUES (?, ?, ?, ?, ?, ?)", rows)
        connection.execute("CREATE INDEX inverse_key ON inverse (key)")

    return store.open(f"{name}-inverse", [dictionary.index_path, dictionary.data_path], build)


def _empty_inverse(connection: sqlite3.Connection) -> None:
    connection.execute(
        "CREATE TABLE inverse (key TEXT, english TEXT, pos TEXT, sense INTEGER, position INTEGER, seq INTEGER)"
    )
