"""The deterministic offline rewriter: request text -> :class:`MaterialPrompt`, no network, no model.

It understands requests of the shape "<object> with / made of / con / de / avec / en <materials>" in English,
Spanish and French, and keeps working (with the text as-is) for any other language:

1. :func:`clean_request` strips the trigger phrase ("Material Alch3mist, …") and checks emptiness and length.
2. Instruction-like clauses ("ignore previous instructions…", "set edit_prompt to…") and markup are dropped:
   the request is data, never instructions.
3. Request verbs and politeness ("genérame", "make me", "crée-moi", "please"…) are stripped from the start.
4. The text is split at the first connector into the object and its materials; several materials are split at
   "and / y / et / ,". Without a connector, material words ("a golden cow", "una vaca dorada") are picked out.
5. Spanish and French words are translated to English with the small vocabulary in :mod:`.vocabulary` (FLUX's
   text encoders work best in English); unknown words stay as written. Known materials get a texture / colour /
   finish description in the edit prompt.

A request that names no object yields the default object (an alchemist's flask) and one that names no material
the alchemist's default material (gold); :func:`rewrite_offline_noted` says so in its notes.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

from ..errors import InvalidRequest
from . import vocabulary as vocab
from .schema import MaterialPrompt
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

__all__ = ["DEFAULT_MATERIAL", "DEFAULT_SUBJECT", "clean_request", "detect_language", "rewrite_offline"]

logger = logging.getLogger(__name__)

DEFAULT_SUBJECT = "an alchemist's flask"
DEFAULT_MATERIAL = "gold"
TRANSLATED_LANGUAGES = frozenset({"en", "es", "fr"})
_MAX_MATERIALS = 6

_TRIGGER_PHRASE = re.compile(r"@?(?:\bmat[eé]ri[ae]l(?:es)?\s+)?\balch3mist\b[\s,:;.!\-–—]*", re.IGNORECASE)
_EDGE_PUNCT = " \t\n,;:.-–—!?/&"
_CLAUSE = re.compile(r"[^.!?;\n/]+[.!?;\n/]*")
_INSTRUCTION = re.compile(
    r"\b(?:ignore[rsz]?|disregard|forget|override|bypass|ignora[rn]?|olvida[rn]?|oublie[rsz]?|jailbreak)\b"
    r"|\b(?:instructions?|instrucciones|consignes|reglas|regles|system\s+prompt|prompt\s+del\s+sistema)\b"
    r"|\b(?:you\s+are\s+now|act\s+as|pretend|developer\s+mode|eres\s+ahora|tu\s+es\s+maintenant)\b"
    r"|\b(?:set|change|replace|output|return|print|respond|reply|write|say|escribe|ecris|devuelve)\b"
    r"[^.;!?]{0,40}?\b(?:edit_prompt|base_prompt|json|poem|poema|poeme|story|cuento|histoire|code)\b"
    r"|\b(?:edit_prompt|base_prompt)\b"
)
_TRAILING_JOINERS = frozenset({"and", "y", "et", "e", "then", "luego", "puis", "but", "pero", "mais"})
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*'?|[^\w\s]")
_INNER_CONNECTORS = frozenset({"with", "con", "avec", "mit", "com"})
_ELISION = re.compile(r"^(l|d|j|qu|s|n|m|t|c)'(.+)$")
_SENTENCE_END = frozenset({".", "!", "?", ";"})
_ARTICLES = frozenset(
    {"a", "an", "the", "some", "un", "una", "unos", "unas", "el", "la", "los", "las", "une", "des", "le", "les", "l'"}
)
_TRAILING_FILLERS: tuple[str, ...] = (
    "please",
    "thanks",
    "thank you",
    "por favor",
    "gracias",
    "s'il te plait",
    "s'il vous plait",
    "stp",
    "svp",
    "merci",
)
_ACCENTS: tuple[tuple[str, str, int], ...] = (
    ("es", "ñ¿¡", 2),
    ("fr", "çèêëîïûùâœ", 1),
    ("de", "äöüß", 2),
    ("pt", "ãõ", 2),
)
_NON_LATIN_SCRIPTS: tuple[tuple[str, str], ...] = (
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("CJK", "zh"),
    ("GREEK", "el"),
    ("HEBREW", "he"),
)


@dataclass(frozen=True)
class _Tok:
    text: str  # as written
    key: str  # folded
    space_before: bool


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


# --- 2. tokens and language -------------------------------------------------------------------------------------------


def _tokenise(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    for match in _TOKEN.finditer(text):
        word = match.group()
        space = match.start() > 0 and text[match.start() - 1].isspace()
        elision = _ELISION.match(fold(word))
        if elision and len(elision.group(2)) > 1:
            cut = len(elision.group(1)) + 1
            tokens.append(_Tok(word[:cut], fold(word[:cut]), space))
            tokens.append(_Tok(word[cut:], fold(word[cut:]), False))
        else:
            tokens.append(_Tok(word, fold(word), space))
    return tokens


@cache
def _sequences(phrases: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Phrases as folded token sequences, longest first."""
    seqs = {tuple(t.key for t in _tokenise(p)) for p in phrases}
    return tuple(sorted(seqs, key=lambda s: (-len(s), s)))


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` (en, es, fr, de, it, pt, ja, ko, zh, el, he) or ``"unknown"``."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "unknown"
    script = _script(letters)
    if script != "latin":
        return script
    keys = [t.key for t in _tokenise(text)]
    scores = {lang: sum(k in words for k in keys) for lang, words in vocab.STOPWORDS.items()}
    scores["en"] += sum(k in _english_words() for k in keys)
    scores["es"] += sum(k in vocab.ES and vocab.ES[k] not in vocab.FUNCTION_WORDS for k in keys)
    scores["fr"] += sum(k in vocab.FR and vocab.FR[k] not in vocab.FUNCTION_WORDS for k in keys)
    lowered = text.lower()
    for language, characters, weight in _ACCENTS:  # accents only break ties between languages with known words
        if scores[language]:
            scores[language] += weight * sum(lowered.count(c) for c in characters)
    best = max(scores, key=lambda lang: scores[lang])  # ties: the first in STOPWORDS order (en, es, fr, …)
    return best if scores[best] > 0 else "unknown"


def _script(letters: list[str]) -> str:
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    if latin * 2 >= len(letters):
        return "latin"
    names = " ".join(unicodedata.name(c, "") for c in letters)
    for marker, language in _NON_LATIN_SCRIPTS:
        if marker in names:
            return language
    return "unknown"


@cache
def _english_words() -> frozenset[str]:
    return vocab.ENGLISH_NOUNS | vocab.ADJECTIVES | set(vocab.MATERIAL_DETAILS) | set(vocab.MATERIAL_ADJECTIVES)


# --- 3. translation ---------------------------------------------------------------------------------------------------


def _english(key: str, language: str) -> str | None:
    """The English word for one folded token, or None when it is not in the vocabulary."""
    table = vocab.ES if language == "es" else vocab.FR if language == "fr" else None
    if table is None:
        return key if key in _english_words() else None
    if key in table:
        return table[key]
    for suffix in ("es", "s"):
        stem = key[: -len(suffix)]
        if key.endswith(suffix) and stem in table:
            word = table[stem]
            invariable = word in vocab.ADJECTIVES or word in vocab.FUNCTION_WORDS or word.endswith("s")
            return word if invariable else word + "s"
    return None


def _translate(tokens: list[_Tok], language: str) -> str:
    """English text for ``tokens`` (es/fr through the vocabulary); other languages are rebuilt as written."""
    if language not in ("es", "fr"):
        return _rebuild(tokens)
    phrases = vocab.PHRASES_ES if language == "es" else vocab.PHRASES_FR
    words: list[tuple[str, str]] = []  # (word, kind) with kind in noun | adj | func | other | punct
    i = 0
    while i < len(tokens):
        step, phrase = _match_phrase(tokens, i, phrases)
        if step:
            if phrase:
                words.append((phrase, "adj" if phrase in vocab.ADJECTIVES else "other"))
            i += step
            continue
        words.append(_word(tokens[i], language))
        i += 1
    return _join_words(_reorder(words))


def _match_phrase(tokens: list[_Tok], start: int, phrases: dict[str, str]) -> tuple[int, str]:
    for length in (4, 3, 2):
        key = " ".join(t.key for t in tokens[start : start + length])
        if len(tokens) - start >= length and key in phrases:
            return length, phrases[key]
    return 0, ""


def _word(token: _Tok, language: str) -> tuple[str, str]:
    if not token.key[:1].isalnum():
        return token.text, "punct"
    english = _english(token.key, language)
    if english is None:
        return token.text, "other"
    if english in vocab.FUNCTION_WORDS:
        return english, "func"
    return english, "adj" if english in vocab.ADJECTIVES else "noun"


def _reorder(words: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Spanish/French word order to English: "skin golden" -> "golden skin", "skin of crocodile" -> "crocodile skin"."""
    out: list[tuple[str, str]] = []
    for word, kind in words:
        if kind == "adj" and out and out[-1][1] == "noun":
            noun = out.pop()
            out.extend([(word, kind), noun])
            continue
        if kind == "noun" and len(out) >= 2 and out[-1][0] == "of" and out[-2][0] in vocab.SURFACE_NOUNS:
            out.pop()
            surface = out.pop()
            out.extend([(word, kind), surface])
            continue
        out.append((word, kind))
    return out


def _join_words(words: list[tuple[str, str]]) -> str:
    parts: list[str] = []
    for index, (word, kind) in enumerate(words):
        if word == "a" and index + 1 < len(words) and words[index + 1][0][:1].lower() in "aeiou":
            word = "an"
        glue = (kind == "punct" and word not in {"(", "-", "&"}) or (parts[-1:] and parts[-1].endswith("'"))
        if parts and glue:
            parts[-1] += word
        else:
            parts.append(word)
    return " ".join(parts).strip()


def _rebuild(tokens: list[_Tok]) -> str:
    return "".join((" " if t.space_before and i else "") + t.text for i, t in enumerate(tokens)).strip()


# --- 4. structure: object and materials -------------------------------------------------------------------------------


def _strip_fillers(tokens: list[_Tok]) -> list[_Tok]:
    """Request verbs and politeness off the start ("genérame", "make me a 3D model of"…) and the end ("please")."""
    leading, trailing = _sequences(vocab.LEADING_FILLERS), _sequences(_TRAILING_FILLERS)
    changed = True
    while changed and tokens:
        changed = False
        while tokens and not tokens[0].key[:1].isalnum():
            tokens, changed = tokens[1:], True
        while tokens and not tokens[-1].key[:1].isalnum():
            tokens, changed = tokens[:-1], True
        for seq in leading:
            if tuple(t.key for t in tokens[: len(seq)]) == seq:
                tokens, changed = tokens[len(seq) :], True
                break
        for seq in trailing:
            if len(tokens) > len(seq) and tuple(t.key for t in tokens[-len(seq) :]) == seq:
                tokens, changed = tokens[: -len(seq)], True
                break
    return tokens


def _find(keys: list[str], seqs: tuple[tuple[str, ...], ...], start: int = 1) -> list[tuple[int, int]]:
    """Every (start, end) where one of ``seqs`` occurs in ``keys`` at or after ``start``, in order, longest first."""
    found = []
    for index in range(start, len(keys)):
        for seq in seqs:
            if tuple(keys[index : index + len(seq)]) == seq:
                found.append((index, index + len(seq)))
                break
    return found


def _split_subject(tokens: list[_Tok], language: str) -> tuple[list[_Tok], list[_Tok]]:
    """(object tokens, material tokens), split at the first strong connector or weak one before a material word."""
    first_sentence = next((i for i, t in enumerate(tokens) if t.key in _SENTENCE_END), len(tokens))
    keys = [t.key for t in tokens]
    hits = [hit for hit in _find(keys, _sequences(vocab.STRONG_CONNECTORS)) if hit[0] <= first_sentence][:1]
    weak = _find(keys[:first_sentence], _sequences(vocab.WEAK_CONNECTORS))
    hits += [hit for hit in weak if _material_follows(tokens[hit[1] :], language)][:1]
    if not hits:
        return tokens, []
    start, end = min(hits)
    return tokens[:start], tokens[end:]


def _material_follows(rest: list[_Tok], language: str) -> bool:
    keys = [t.key for t in rest]
    while keys and keys[0] in _ARTICLES:
        keys.pop(0)
    return bool(keys) and _is_material_word(keys[0], language)


def _is_material_word(key: str, language: str) -> bool:
    english = _english(key, language) or key
    return english in vocab.MATERIAL_DETAILS or english in vocab.SURFACE_NOUNS or english in vocab.MATERIAL_ADJECTIVES


def _split_materials(tokens: list[_Tok], language: str) -> list[str]:
    """Materials split at "and / y / et / , / with / con / avec"; "black and white stripes" stays one."""
    groups: list[list[_Tok]] = [[]]
    for token in tokens:
        if token.key in vocab.MATERIAL_SEPARATORS or token.key in _SENTENCE_END or token.key in _INNER_CONNECTORS:
            groups.append([])
        else:
            groups[-1].append(token)
    connectors = _sequences(vocab.STRONG_CONNECTORS)
    materials: list[str] = []
    pending = ""  # adjectives waiting for their noun ("black" in "black and white stripes")
    for group in groups:
        for seq in connectors:
            if tuple(t.key for t in group[: len(seq)]) == seq:
                group = group[len(seq) :]
                break
        material = _drop_article(_translate(_strip_fillers(group), language))
        if material and all(word in vocab.ADJECTIVES for word in material.split()):
            pending = f"{pending}{material} and "
            continue
        material = f"{pending}{material}" if material else pending.removesuffix(" and ")
        pending = ""
        if material and material not in materials:
            materials.append(truncate(material, 80))
    if pending:
        materials.append(pending.removesuffix(" and "))
    return materials[:_MAX_MATERIALS]


def _drop_article(phrase: str) -> str:
    """Drop "the" / "some", and "a" before a surface or material ("a crocodile skin"); keep "a mane in flames"."""
    first, _, rest = phrase.partition(" ")
    head = re.split(r" (?:in|of|on|with|and) ", f" {rest.lower()} ")[0].split()  # "mane" in "mane in flames"
    uncountable = bool(head) and (head[-1] in vocab.SURFACE_NOUNS or head[-1] in _pure_materials())
    return (
        rest
        if rest and (first.lower() in {"the", "some"} or (first.lower() in {"a", "an"} and uncountable))
        else phrase
    )


def _is_pure_material(material: str) -> bool:
    """ "white marble", "gold", "black leather": material words and adjectives only (not "a mane in flames")."""
    words = [vocab.MATERIAL_ADJECTIVES.get(w, w) for w in material.lower().split()]
    named = any(w in _pure_materials() for w in words)
    return named and all(w in _pure_materials() or w in vocab.ADJECTIVES for w in words)


def _materials_in(tokens: list[_Tok], language: str) -> tuple[list[_Tok], list[str]]:
    """Without a connector: pick material words out ("a golden cow" -> "a cow", ["gold"])."""
    rest: list[_Tok] = []
    materials: list[str] = []
    for token in tokens:
        english = _english(token.key, language) or token.key
        material = vocab.MATERIAL_ADJECTIVES.get(english) or (english if english in _pure_materials() else None)
        if material is None:
            rest.append(token)
        elif material not in materials:
            materials.append(material)
    return rest, materials[:_MAX_MATERIALS]


_NOT_PURE = frozenset({"crocodile", "snake", "leopard", "zebra", "tiger", "dragon", "mirror", "stars", "cloud"})


@cache
def _pure_materials() -> frozenset[str]:
    """Material names that are not also objects (a "dragon" or a "tiger" is a subject, not a material)."""
    return frozenset(vocab.MATERIAL_DETAILS) - _NOT_PURE


def _details(materials: list[str]) -> dict[str, str]:
    """Texture / colour / finish for each material the vocabulary knows."""
    details: dict[str, str] = {}
    for material in materials:
        key = material.lower()
        candidates = [key, *key.replace("-", " ").split()]
        for word in candidates:
            word = vocab.MATERIAL_ADJECTIVES.get(word, word)
            if word in vocab.MATERIAL_DETAILS:
                details[material] = vocab.MATERIAL_DETAILS[word]
                break
    return details


# --- 5. the rewriter --------------------------------------------------------------------------------------------------


def rewrite_offline(text: str) -> MaterialPrompt:
    """Deterministic rewrite of a request (trigger phrase allowed) into a :class:`MaterialPrompt`."""
    return rewrite_offline_noted(text)[0]


def rewrite_offline_noted(text: str) -> tuple[MaterialPrompt, list[str]]:
    """:func:`rewrite_offline` plus notes on what it had to assume or ignore (for the job's warnings)."""
    # 1. Clean: trigger phrase, instruction-like clauses, markup
    request = _strip_trigger_phrase(_require_text(text))
    language = detect_language(request)
    safe, notes = _drop_instructions(clean_text(request, len(request) + 1).replace("(", " ").replace(")", " "))
    tokens = _strip_fillers(_tokenise(safe))

    # 2. Object and materials
    subject_tokens, material_tokens = _split_subject(tokens, language)
    materials = _split_materials(material_tokens, language)
    if not materials:
        subject_tokens, materials = _materials_in(subject_tokens, language)
    first_sentence = next((i for i, t in enumerate(subject_tokens) if t.key in _SENTENCE_END), len(subject_tokens))
    subject = _subject(_strip_fillers(subject_tokens[:first_sentence]), language)

    # 3. Defaults for what the request did not say
    described = ""
    if not subject:
        subject = DEFAULT_SUBJECT
        notes.append(f"the request names no object; used {DEFAULT_SUBJECT!r}")
    if not materials and (language in TRANSLATED_LANGUAGES or not tokens):
        materials = [DEFAULT_MATERIAL]
        notes.append(f"the request names no material; used {DEFAULT_MATERIAL!r}")
    elif not materials:
        described = truncate(_rebuild(tokens), 200)
        materials = [truncate(described, 80)]

    # 4. Compose the prompts
    prompt = MaterialPrompt(
        subject=subject,
        materials=materials,
        base_prompt=base_prompt_for(subject),
        edit_prompt=_edit_prompt(subject, materials, described),
        title=truncate(described, 80) if described else title_for(subject, materials),
        language=language,
        rewriter="offline",
    )
    for note in notes:
        logger.info("offline rewrite: %s", note)
    return prompt, notes


def _subject(tokens: list[_Tok], language: str) -> str:
    words = _translate(tokens, language).strip(" ,;:.-")
    content = [w for w in words.split() if fold(w) not in _ARTICLES and fold(w) not in vocab.FUNCTION_WORDS]
    if not any(c.isalnum() for w in content for c in w):
        return ""
    subject = truncate(words, 120)
    return with_article(subject) if language in TRANSLATED_LANGUAGES else subject


def _edit_prompt(subject: str, materials: list[str], described: str) -> str:
    if described:
        return finish_edit_prompt(f"give the object the surface material, texture, colour and finish of: {described}")
    pure = {m for m in materials if _is_pure_material(m)}
    return edit_prompt_for(subject, materials, _details(materials), pure)
