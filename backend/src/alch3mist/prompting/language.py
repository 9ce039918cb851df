"""Which language a request is in: the writing system first, then Lingua's n-gram models, then the grammar's words.

Lingua (``lingua-language-detector``, Apache-2.0) ships its models inside the wheel and runs offline. It is asked
only about the languages the rewriter translates (:data:`.grammar.SUPPORTED`), and of those only the ones whose
closed-class words (articles, prepositions, request verbs: :mod:`.grammar`) occur in the request — all nine when
none does. Lingua loads a language's models on first use (about 0.1 s each on an idle machine, shared by every
detector of the process), so the first request of a process pays for two or three languages, not nine;
:meth:`LanguageIdentifier.warm` loads all nine at a service start. A request with the words of one language only
("kot z drewna") needs no model at all. Short requests are where n-gram models hesitate ("vaca" is Spanish,
Portuguese or Italian; "a golden cow" is barely English), so Lingua's confidences are re-weighted by how many of
the request's words are that language's closed-class words.

A request that matches none of them well (Swahili, Finnish …: low confidence and none of the language's grammar
words) comes back as ``"unknown"``; a non-Latin writing system comes back as its language (ja, zh, ko, ru, el, he,
ar) without asking Lingua. The rewriter then keeps the text as written and says so in the warnings.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Callable
from functools import lru_cache

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

from .grammar import GRAMMARS, SUPPORTED

__all__ = ["Knows", "LanguageIdentifier"]

Knows = Callable[[str, str], bool]

_NON_LATIN_SCRIPTS: tuple[tuple[str, str], ...] = (
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("CJK", "zh"),
    ("CYRILLIC", "ru"),
    ("GREEK", "el"),
    ("HEBREW", "he"),
    ("ARABIC", "ar"),
)
_GRAMMAR_WEIGHT = 0.35  # a request made only of one language's grammar words gains this much confidence
_CANDIDATE_SHARE = 0.5  # a language using at most half as many of its closed-class words as the best is dropped
_MIN_CONFIDENCE = 0.25  # below this, a language needs grammar words of its own to be believed


class LanguageIdentifier:
    """ISO 639-1 code of a request; detectors are built on first use (thread-safe)."""

    def __init__(self) -> None:
        self._detectors: dict[frozenset[str], LanguageDetector] = {}
        self._lock = threading.Lock()

    def identify(self, text: str, words: list[str], knows: Knows | None = None) -> str:
        """The language of ``text``, whose folded words are ``words`` (``"unknown"`` when none is credible).

        ``knows(code, word)`` says whether a language's dictionary or lemma table has a word: for a request
        without closed-class words ("goldene Krone"), the languages that know most of its words are asked.
        """
        letters = [c for c in text if c.isalpha()]
        if not letters:
            return "unknown"
        script = _script(letters)
        if script != "latin":
            return script
        shares = {code: _grammar_share(words, code) for code in SUPPORTED}
        best = max(shares.values())
        # the languages whose closed-class words the request uses about as much as the best one's (all when none)
        candidates = frozenset(code for code, share in shares.items() if share > _CANDIDATE_SHARE * best > 0)
        if not candidates and knows is not None:
            candidates = _knowing(words, knows)
            if not candidates:  # no grammar word and no known word: a language without a dictionary
                return "unknown"
        candidates = candidates or frozenset(SUPPORTED)
        if len(candidates) == 1:
            return next(iter(candidates))
        scores: dict[str, float] = {}
        for value in self._detector(candidates).compute_language_confidence_values(text):
            code = value.language.iso_code_639_1.name.lower()
            if value.value < _MIN_CONFIDENCE and shares[code] == 0.0:
                continue
            scores[code] = value.value + _GRAMMAR_WEIGHT * shares[code]
        if not scores:
            return "unknown"
        return max(scores, key=lambda code: scores[code])

    def warm(self) -> None:
        """Load every supported language's models now (a service start), not on the first requests."""
        with self._lock:
            builder = LanguageDetectorBuilder.from_languages(*_languages(frozenset(SUPPORTED)))
            self._detectors[frozenset(SUPPORTED)] = builder.with_preloaded_language_models().build()

    def _detector(self, codes: frozenset[str]) -> LanguageDetector:
        with self._lock:
            if codes not in self._detectors:
                self._detectors[codes] = LanguageDetectorBuilder.from_languages(*_languages(codes)).build()
            return self._detectors[codes]


def _knowing(words: list[str], knows: Knows) -> frozenset[str]:
    """The languages that know the most of ``words``, when that is at least half of them (else none)."""
    alphabetic = [w for w in words if any(c.isalpha() for c in w)]
    if not alphabetic:
        return frozenset()
    known = {code: sum(knows(code, word) for word in alphabetic) for code in SUPPORTED}
    most = max(known.values())
    if 2 * most < len(alphabetic):
        return frozenset()
    return frozenset(code for code, count in known.items() if count == most)


def _languages(codes: frozenset[str]) -> list[Language]:
    return [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in sorted(codes)]


def _grammar_share(words: list[str], code: str) -> float:
    """Share of the words that are this language's closed-class words or phrases (articles, connectors, fillers:
    "s'il vous plaît" counts four words)."""
    vocabulary = _vocabulary(code)
    alphabetic = [w for w in words if any(c.isalpha() for c in w)]
    if not alphabetic:
        return 0.0
    covered, index = 0, 0
    while index < len(alphabetic):
        length = next((n for n in range(4, 0, -1) if _phrase(alphabetic[index : index + n]) in vocabulary), 0)
        covered += length
        index += max(length, 1)
    return covered / len(alphabetic)


def _phrase(words: list[str]) -> str:
    return " ".join(words).replace("' ", "'")  # "s' il vous plait" is written "s'il vous plait"


@lru_cache(maxsize=len(SUPPORTED))
def _vocabulary(code: str) -> frozenset[str]:
    g = GRAMMARS[code]
    return g.articles | g.made_of | g.coated | g.weak_made_of | g.with_ | g.and_ | g.fillers | g.intensifiers


def _script(letters: list[str]) -> str:
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    if latin * 2 >= len(letters):
        return "latin"
    names = " ".join(unicodedata.name(c, "") for c in letters)
    for marker, language in _NON_LATIN_SCRIPTS:
        if marker in names:
            return language
    return "unknown"
