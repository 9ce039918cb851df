"""Which language a request is in: the writing system first, then Lingua's n-gram models, then the grammar's words.

Lingua (``lingua-language-detector``, Apache-2.0) ships its models inside the wheel and runs offline. The detector
is built for the languages the rewriter translates (:data:`.grammar.SUPPORTED`) only: fewer models load faster
(1.5 s and ~250 MB for nine languages on the dev VM, against 3 s and ~450 MB for 23) and a request in another
language has no dictionary to use anyway. Short requests are where n-gram models hesitate ("vaca" is Spanish,
Portuguese or Italian; "a golden cow" is barely English), so Lingua's confidences are re-weighted by how many of
the request's words are that language's closed-class words (articles, prepositions, request verbs: :mod:`.grammar`).

A request that matches none of them well (Swahili, Finnish …: low confidence and none of the language's grammar
words) comes back as ``"unknown"``; a non-Latin writing system comes back as its language (ja, zh, ko, ru, el, he,
ar) without asking Lingua. The rewriter then keeps the text as written and says so in the warnings.
"""

from __future__ import annotations

import threading
import unicodedata

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

from .grammar import GRAMMARS, SUPPORTED

__all__ = ["LanguageIdentifier"]

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
_MIN_CONFIDENCE = 0.25  # below this, a language needs grammar words of its own to be believed


class LanguageIdentifier:
    """ISO 639-1 code of a request; the detector is built on first use (thread-safe)."""

    def __init__(self) -> None:
        self._detector: LanguageDetector | None = None
        self._lock = threading.Lock()

    def identify(self, text: str, words: list[str]) -> str:
        """The language of ``text``, whose folded words are ``words`` (``"unknown"`` when none is credible)."""
        letters = [c for c in text if c.isalpha()]
        if not letters:
            return "unknown"
        script = _script(letters)
        if script != "latin":
            return script
        scores: dict[str, float] = {}
        for value in self._load().compute_language_confidence_values(text):
            code = value.language.iso_code_639_1.name.lower()
            grammar = _grammar_share(words, code)
            if value.value < _MIN_CONFIDENCE and grammar == 0.0:
                continue
            scores[code] = value.value + _GRAMMAR_WEIGHT * grammar
        if not scores:
            return "unknown"
        return max(scores, key=lambda code: scores[code])

    def warm(self) -> None:
        """Build the detector and load its models now (a service start), not on the first request."""
        self.identify("warm up", ["warm", "up"])

    def _load(self) -> LanguageDetector:
        with self._lock:
            if self._detector is None:
                languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in SUPPORTED]
                self._detector = LanguageDetectorBuilder.from_languages(*languages).build()
            return self._detector


def _grammar_share(words: list[str], code: str) -> float:
    """Share of the words that are this language's closed-class words (articles, connectors, fillers)."""
    grammar = GRAMMARS[code]
    vocabulary = grammar.articles | grammar.made_of | grammar.coated | grammar.weak_made_of | grammar.with_ | grammar.and_
    vocabulary |= grammar.fillers | grammar.intensifiers
    alphabetic = [w for w in words if any(c.isalpha() for c in w)]
    if not alphabetic:
        return 0.0
    return sum(w in vocabulary for w in alphabetic) / len(alphabetic)


def _script(letters: list[str]) -> str:
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    if latin * 2 >= len(letters):
        return "latin"
    names = " ".join(unicodedata.name(c, "") for c in letters)
    for marker, language in _NON_LATIN_SCRIPTS:
        if marker in names:
            return language
    return "unknown"
