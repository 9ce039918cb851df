"""The deterministic offline rewriter: request text -> :class:`MaterialPrompt`, no network, no model server.

It runs on language resources installed by ``scripts/install-system-deps.sh`` and ``requirements.txt``:
Lingua's language models (:mod:`.language`), simplemma's lemmas and Debian's FreeDict dictionaries into English
(:mod:`.lexicon`), English WordNet (:mod:`.wordnet`, :mod:`.senses`), and one curated table of material appearance
phrases (:mod:`.vocabulary`). Nothing is read whole at start: the dictionaries' and WordNet's indexes are SQLite
files built once into ``<cache_dir>/lexicon`` (:mod:`.store`), simplemma's tables tries beside them, and Lingua
loads only the languages a request may be in; :meth:`OfflineRewriter.warm` opens everything at a service start.
:meth:`OfflineRewriter.rewrite` reads as its steps:

1. Clean: :func:`clean_request` strips the trigger phrase ("Material Alch3mist, …"); instruction-like clauses
   ("ignore previous instructions…", "SYSTEM: …", "steps=100000") and markup are dropped — the request is data.
2. Identify the language (en, es, fr, de, it, pt, nl, pl, sv are translated).
3. Parse and translate (:mod:`.parse`): the object, its materials and their finishes, in English.
4. Defaults: no object -> an alchemist's flask, no material -> gold; both said in the notes.
5. Compose the prompts (:mod:`.text`): the plain object for FLUX.1-dev, the material edit for Kontext, with the
   curated appearance phrase of each known material.

A request in a language without a dictionary (or with its dictionary not installed) keeps the old behaviour: the
text is used as written and the edit prompt asks for "the surface material, texture, colour and finish of: <text>";
the notes (the job's warnings, recorded in its manifest) say which language and why.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InvalidRequest
from .grammar import GRAMMARS, LANGUAGE_NAMES
from .language import LanguageIdentifier
from .lexicon import DictionaryMissing, Lemmas, Lexicon, build_lexicons
from .parse import Parsed, Parser, Token
from .schema import MaterialPrompt
from .senses import English
from .store import IndexStore
from .text import (
    base_prompt_for,
    clean_text,
    edit_prompt_for,
    finish_edit_prompt,
    fold,
    normalise,
    title_for,
    truncate,
    with_article,
)
from .wordnet import WordNet, WordNetMissing

__all__ = [
    "DEFAULT_MATERIAL",
    "DEFAULT_SUBJECT",
    "OfflineRewriter",
    "clean_request",
    "detect_language",
    "offline_rewriter",
    "rewrite_offline",
    "rewrite_offline_noted",
]

logger = logging.getLogger(__name__)

DEFAULT_SUBJECT = "an alchemist's flask"
DEFAULT_MATERIAL = "gold"
DEFAULT_DICTIONARY_DIR = Path("/usr/share/dictd")
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "alch3mist"  # as Settings.cache_dir

_TRIGGER_PHRASE = re.compile(r"@?(?:\bmat[eé]ri[ae](?:l|le|ł)(?:es)?\s+)?\balch3mist\b[\s,:;.!\-–—]*", re.IGNORECASE)
_EDGE_PUNCT = " \t\n,;:.-–—!?/&"
_CLAUSE = re.compile(r"[^.!?;\n/]+[.!?;\n/]*")
_INSTRUCTION = re.compile(
    r"\b(?:ignore[rsz]?|disregard|forget|override|bypass|jailbreak|ignora[rn]?|olvida[rn]?|oublie[rsz]?|"
    r"ignoriere[n]?|vergiss|vergessen|dimentica|esquece[r]?|esqueca|negeer|vergeet|zignoruj|zapomnij|ignorera|glom)\b"
    r"|\b(?:instructions?|instrucciones|instrucoes|istruzioni|anweisungen|consignes|reglas|regles|instructies|"
    r"instrukcje|instruktioner|system\s*prompt|prompt\s+del\s+sistema)\b"
    r"|\b(?:system|assistant|developer|sistema)\s*:"
    r"|\b(?:you\s+are\s+now|act\s+as|pretend|developer\s+mode|eres\s+ahora|tu\s+es\s+maintenant|du\s+bist\s+jetzt)\b"
    r"|\b(?:set|change|replace|output|return|print|respond|reply|write|say|escribe|ecris|devuelve|schreibe|scrivi)\b"
    r"[^.;!?]{0,40}?\b(?:edit_prompt|base_prompt|json|poem|poema|poeme|gedicht|story|cuento|histoire|code)\b"
    r"|\b(?:edit_prompt|base_prompt)\b"
    r"|\b[a-z_]+\s*=\s*\S+"  # key=value settings ("steps=100000", "cfg = 30")
    r"|<\|"  # chat-template tokens
)
_TRAILING_JOINERS = frozenset({"and", "y", "et", "e", "und", "en", "i", "och", "then", "luego", "puis", "but"})
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*'?|[^\w\s]")
_ELISION = re.compile(r"^(l|d|j|qu|s|n|m|t|c|un|dell|nell|all|sull|dall)'(.+)$")
_MAX_DESCRIBED = 200


@dataclass(frozen=True)
class _Resources:
    wordnet: WordNet
    english: English
    lexicons: dict[str, Lexicon]


class OfflineRewriter:
    """The offline rewriter over one set of language resources (opened on first use; thread-safe).

    ``cache_dir`` holds the look-up indexes built once from the resources (``<cache_dir>/lexicon``); None builds
    them in memory for this process only (slow to start).
    """

    def __init__(
        self,
        dictionary_dir: Path = DEFAULT_DICTIONARY_DIR,
        wordnet_dir: Path = DEFAULT_WORDNET_DIR,
        cache_dir: Path | None = DEFAULT_CACHE_DIR,
    ) -> None:
        self.dictionary_dir = dictionary_dir
        folder = cache_dir / "lexicon" if cache_dir is not None else None
        store = IndexStore(folder)
        self.identifier = LanguageIdentifier()
        wordnet = WordNet(wordnet_dir, store)
        lexicons = build_lexicons(GRAMMARS, dictionary_dir, store, Lemmas(folder))
        self.resources = _Resources(wordnet, English(wordnet), lexicons)
        self._parse_lock = threading.Lock()
        self._warm = False

    def warm(self) -> list[str]:
        """Load every language's resources now (a service start), building missing indexes once; returns what is
        missing (the first build takes minutes; later starts open the indexes in about a second)."""
        missing: list[str] = []
        if self._warm:
            return missing
        self.identifier.warm()
        try:
            self.resources.wordnet.warm()
        except WordNetMissing as exc:
            missing.append(str(exc))
        for lexicon in self.resources.lexicons.values():
            try:
                lexicon.check()
                lexicon.warm()
            except DictionaryMissing as exc:
                missing.append(str(exc))
        for problem in missing:
            logger.warning("offline rewriter: %s", problem)
        self._warm = True
        return missing

    def rewrite(self, text: str) -> tuple[MaterialPrompt, list[str]]:
        """A :class:`MaterialPrompt` for ``text`` (trigger phrase allowed), and notes on what was assumed or ignored."""
        # 1. Clean: trigger phrase, markup, instruction-like clauses
        request = _strip_trigger_phrase(_require_text(text))
        safe, notes = _drop_instructions(clean_text(request, len(request) + 1).replace("(", " ").replace(")", " "))
        tokens = _tokenise(safe)

        # 2. Language
        language = self.identifier.identify(safe, [t.key for t in tokens], self._knows) if tokens else "unknown"

        # 3. Parse and translate (or keep the text as written when the language has no dictionary)
        parsed, reason = self._parse(tokens, language)
        if reason:
            notes.append(reason)
            return self._as_written(tokens, language, notes), notes
        notes.extend(f"no English translation found for {word!r}; kept as written" for word in parsed.untranslated)

        # 4. Defaults for what the request did not say
        subject, materials = parsed.subject, parsed.materials
        if not subject:
            subject = DEFAULT_SUBJECT
            notes.append(f"the request names no object; used {DEFAULT_SUBJECT!r}")
        if not materials:
            materials = [DEFAULT_MATERIAL]
            notes.append(f"the request names no material; used {DEFAULT_MATERIAL!r}")

        # 5. Compose the prompts
        subject = with_article(truncate(subject, 120))
        materials = [truncate(m, 80) for m in materials]
        prompt = MaterialPrompt(
            subject=subject,
            materials=materials,
            base_prompt=base_prompt_for(subject),
            edit_prompt=self._edit_prompt(subject, materials),
            title=title_for(subject, materials),
            language=language,
            rewriter="offline",
        )
        for note in notes:
            logger.info("offline rewrite: %s", note)
        return prompt, notes

    def _knows(self, language: str, word: str) -> bool:
        """The language's resources know ``word`` (English: WordNet; a missing dictionary knows nothing)."""
        if language == "en":
            return self.resources.english.is_word(word)
        lexicon = self.resources.lexicons.get(language)
        try:
            return lexicon is not None and lexicon.knows(word)
        except (DictionaryMissing, WordNetMissing):
            return False

    def _parse(self, tokens: list[Token], language: str) -> tuple[Parsed, str]:
        """The parse, or an empty one and the reason the text must be used as written."""
        empty = Parsed("", [])
        if not tokens:
            return empty, ""
        name = LANGUAGE_NAMES.get(language, language)
        if language not in GRAMMARS:
            what = "the language was not recognised" if language == "unknown" else f"the request is in {name}"
            return empty, f"{what} and there is no dictionary for it: the request was used as written, untranslated"
        resources = self.resources
        lexicon = resources.lexicons.get(language)
        try:
            resources.wordnet.check()
            if lexicon is not None:
                lexicon.check()
        except (WordNetMissing, DictionaryMissing) as exc:
            return empty, f"the request is in {name} but {exc}: it was used as written, untranslated"
        if lexicon is not None and not any(lexicon.knows(t.text) for t in tokens if t.key[:1].isalpha()):
            return empty, (
                f"the request looks {name} to the language detector but none of its words is in the {name} "
                "dictionary, so its language was not recognised: the request was used as written, untranslated"
            )
        with self._parse_lock:  # one parse at a time: the parser keeps per-request state
            return Parser(GRAMMARS[language], lexicon, resources.english).parse(tokens), ""

    def _as_written(self, tokens: list[Token], language: str, notes: list[str]) -> MaterialPrompt:
        """Today's behaviour for a language without a dictionary: the text as written, described by the edit."""
        described = truncate(_rebuild(tokens), _MAX_DESCRIBED)
        if not described:
            notes.append(f"the request names no object; used {DEFAULT_SUBJECT!r}")
            notes.append(f"the request names no material; used {DEFAULT_MATERIAL!r}")
            return self._defaults(language)
        subject = truncate(described, 120)
        return MaterialPrompt(
            subject=subject,
            materials=[truncate(described, 80)],
            base_prompt=base_prompt_for(subject),
            edit_prompt=finish_edit_prompt(
                f"give the object the surface material, texture, colour and finish of: {described}"
            ),
            title=truncate(described, 80),
            language=language,
            rewriter="offline",
        )

    def _defaults(self, language: str) -> MaterialPrompt:
        return MaterialPrompt(
            subject=DEFAULT_SUBJECT,
            materials=[DEFAULT_MATERIAL],
            base_prompt=base_prompt_for(DEFAULT_SUBJECT),
            edit_prompt=self._edit_prompt(DEFAULT_SUBJECT, [DEFAULT_MATERIAL]),
            title=title_for(DEFAULT_SUBJECT, [DEFAULT_MATERIAL]),
            language=language,
            rewriter="offline",
        )

    def _edit_prompt(self, subject: str, materials: list[str]) -> str:
        english = self.resources.english
        details = {m: d for m in materials if (d := english.details(m))}
        pure = {m for m in materials if _is_pure_material(english, m)}
        return edit_prompt_for(subject, materials, details, pure)


def _is_pure_material(english: English, material: str) -> bool:
    """ "molten gold", "white marble": a material noun with adjectives (not "a mane in flames", "crocodile skin")."""
    words = material.lower().split()
    if not words or words[0] in ("a", "an") or any(w in ("in", "of", "with", "on") for w in words):
        return False
    head = words[-1]
    return english.is_mainly_material(head) or bool(english.material_of_adjective(head))


# --- the shared instance ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def offline_rewriter(
    dictionary_dir: Path = DEFAULT_DICTIONARY_DIR,
    wordnet_dir: Path = DEFAULT_WORDNET_DIR,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
) -> OfflineRewriter:
    """One rewriter per resource folders, shared by every caller (its resources open once)."""
    return OfflineRewriter(dictionary_dir, wordnet_dir, cache_dir)


def rewrite_offline(text: str) -> MaterialPrompt:
    """Deterministic rewrite of a request (trigger phrase allowed) into a :class:`MaterialPrompt`."""
    return offline_rewriter().rewrite(text)[0]


def rewrite_offline_noted(text: str) -> tuple[MaterialPrompt, list[str]]:
    """:func:`rewrite_offline` plus notes on what it had to assume or ignore (for the job's warnings)."""
    return offline_rewriter().rewrite(text)


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` (en, es, fr, de, it, pt, nl, pl, sv; ja, zh, ko, ru, el, he, ar) or ``"unknown"``."""
    tokens = _tokenise(normalise(text))
    rewriter = offline_rewriter()
    return rewriter.identifier.identify(text, [t.key for t in tokens], rewriter._knows) if tokens else "unknown"


# --- 1. cleaning ------------------------------------------------------------------------------------------------------


def clean_request(text: str, max_chars: int) -> str:
    """The request without the trigger phrase; raises :class:`InvalidRequest` when empty or too long."""
    stripped = _require_text(text)
    if len(stripped) > max_chars:
        raise InvalidRequest(
            f"The request is {len(stripped)} characters long; the limit is {max_chars} characters "
            "(ALCH3MIST_MAX_REQUEST_CHARS). Shorten it."
        )
    return _strip_trigger_phrase(stripped)


def _require_text(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise InvalidRequest("The request is empty: describe an object and its material, e.g. 'a cow made of gold'.")
    return stripped


def _strip_trigger_phrase(text: str) -> str:
    text = normalise(text)
    text = _TRIGGER_PHRASE.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip(_EDGE_PUNCT)
    if not text:
        raise InvalidRequest(
            "The request is empty once the trigger phrase 'Alch3mist' is removed: describe an object and its "
            "material, e.g. 'Alch3mist, a cow made of gold'."
        )
    return text


def _drop_instructions(text: str) -> tuple[str, list[str]]:
    """The text without instruction-like clauses (each cut where the instruction starts), and notes about it."""
    kept: list[str] = []
    notes: list[str] = []
    for clause in _CLAUSE.findall(text):
        match = _INSTRUCTION.search(fold(clause))
        if match is None:
            kept.append(clause)
            continue
        notes.append(f"ignored instruction-like text in the request: {truncate(clause[match.start() :].strip(), 60)!r}")
        head = clause[: match.start()].strip(_EDGE_PUNCT)
        words = head.split()
        while words and fold(words[-1]) in _TRAILING_JOINERS:
            words.pop()
        if words:
            kept.append(" ".join(words) + ". ")
    return " ".join(kept).strip(), notes


def _tokenise(text: str) -> list[Token]:
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        word = match.group()
        space = match.start() > 0 and text[match.start() - 1].isspace()
        elision = _ELISION.match(fold(word))
        if elision and len(elision.group(2)) > 1:
            cut = len(elision.group(1)) + 1
            tokens.append(Token(word[:cut], fold(word[:cut]), space))
            tokens.append(Token(word[cut:], fold(word[cut:]), False))
        else:
            tokens.append(Token(word, fold(word), space))
    return tokens


def _rebuild(tokens: list[Token]) -> str:
    return "".join((" " if t.space_before and i else "") + t.text for i, t in enumerate(tokens)).strip()
