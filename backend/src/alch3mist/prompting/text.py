"""Text hygiene and prompt composition shared by the offline, LLM and caller rewriters.

Every string that ends up in a :class:`MaterialPrompt` — whoever wrote it — goes through :func:`clean_text`
(no markup, no control characters, one space between words, capped at a word boundary), and every edit prompt
through :func:`finish_edit_prompt` (starts with the trigger word, ends by asking to keep shape, pose and
background).
"""

from __future__ import annotations

import re
import unicodedata

from .schema import MAX_PROMPT_CHARS, TRIGGER_WORD

BASE_STYLE = (
    "centred, the whole object in view, isolated on a plain light grey background, soft diffuse studio lighting, "
    "neutral matte uniform surface, no text, no scene, no other objects, sharp focus, high detail"
)
EDIT_TAIL = "while keeping the shape, pose and background unchanged"
EDIT_FINISH = "with detailed material texture, realistic colour and finish"

_TAG = re.compile(r"<[^>]{0,200}>")
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*")
_MD_LINK = re.compile(r"!?\[([^\]]{0,200})\]\([^)]{0,500}\)")
_EMPTY_PARENS = re.compile(r"\(\s*\)")
_URL = re.compile(r"\bhttps?://\S+", re.IGNORECASE)
# Keep letters, digits, whitespace and plain punctuation; everything else (markdown, braces, quotes, emoji) goes.
_NOT_ALLOWED = re.compile(r"[^\w\s,.;:!?'()\-/&+%°]")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)])")
_REPEATED_PUNCT = re.compile(r"([,.;:!?/\-'])\1+")
_PLAIN = {0x2019: "'", 0x2018: "'", 0x02BC: "'", 0x0153: "oe", 0x0152: "Oe", 0x00E6: "ae", 0x00C6: "Ae"}
_TRIGGER_PREFIX = re.compile(rf"^\W*{re.escape(TRIGGER_WORD)}\b\W*", re.IGNORECASE)


def fold(text: str) -> str:
    """Lower case without accents, one character for one character (so offsets stay valid)."""
    out = []
    for char in text:
        low = char.lower()
        if len(low) != 1:
            out.append(char)
            continue
        base = unicodedata.normalize("NFD", low)[0]
        out.append(base)
    return "".join(out)


def normalise(text: str) -> str:
    """NFC, typographic quotes and ligatures made plain, control characters removed."""
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_PLAIN)
    return "".join(c if unicodedata.category(c)[0] != "C" or c in "\n\t" else " " for c in text)


def clean_text(text: str, max_chars: int) -> str:
    """Plain text for a prompt: no markup, no URLs, single spaces, at most ``max_chars`` (cut at a word)."""
    text = normalise(text)
    text = _FENCE.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _MD_LINK.sub(r" \1 ", text)
    text = _URL.sub(" ", text)
    text = _NOT_ALLOWED.sub(" ", text)
    text = _EMPTY_PARENS.sub(" ", _REPEATED_PUNCT.sub(r"\1", text))
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return truncate(text, max_chars)


def truncate(text: str, max_chars: int) -> str:
    """``text`` if it fits, else cut at the last space before ``max_chars`` (trailing punctuation dropped)."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > max_chars // 2 else text[:max_chars]
    return cut.rstrip(" ,;:-/&(").strip()


def strip_trigger(edit_prompt: str) -> str:
    """The edit prompt without a leading trigger word (and the punctuation after it)."""
    return _TRIGGER_PREFIX.sub("", edit_prompt).strip()


def finish_edit_prompt(body: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """``Alch3mist, <body>, while keeping the shape, pose and background unchanged.`` within ``max_chars``.

    A leading trigger word in ``body`` is replaced by the canonical spelling; the keep-clause is added unless the
    body already asks to keep something.
    """
    body = strip_trigger(body).rstrip(" .,;")
    head = f"{TRIGGER_WORD}, "
    tail = "" if "keep" in fold(body) else f", {EDIT_TAIL}"
    room = max_chars - len(head) - len(tail) - 1
    body = truncate(body, room).rstrip(" .,;") if body else "apply the material"
    return f"{head}{body}{tail}."


def base_prompt_for(subject: str) -> str:
    """The FLUX.1-dev prompt for the plain object (what image-to-3D needs)."""
    core = subject_core(subject)
    keep_as_written = core == subject and _has_determiner(subject)  # "two cows", "some apples"
    lead = subject[0].upper() + subject[1:] if keep_as_written else f"A single {core}"
    return truncate(f"{lead}, {BASE_STYLE}", MAX_PROMPT_CHARS)


def edit_prompt_for(subject: str, materials: list[str], details: dict[str, str], pure: set[str]) -> str:
    """The Kontext instruction: "make the cow out of <pure materials> and give it <features>", each with its
    texture / colour / finish from ``details``, then the keep-clause. Without room for the details, names only."""
    body = _edit_body(subject_core(subject), materials, details, pure)
    if len(body) + len(EDIT_TAIL) + 20 > MAX_PROMPT_CHARS:
        body = _edit_body(subject_core(subject), materials, {}, pure)
    return finish_edit_prompt(body)


def _edit_body(core: str, materials: list[str], details: dict[str, str], pure: set[str]) -> str:
    def described(items: list[str]) -> str:
        return _join([f"{m} ({details[m]})" if m in details else m for m in items])

    made_of = [m for m in materials if m in pure]
    features = [m for m in materials if m not in pure]
    clauses = [f"make the {core} out of {described(made_of)}"] if made_of else []
    if features:
        clauses.append(f"give {'it' if made_of else 'the ' + core} {described(features)}")
    return f"{' and '.join(clauses)}, {EDIT_FINISH}"


def subject_core(subject: str) -> str:
    """``"a cow"`` -> ``"cow"``: the subject without a leading article."""
    words = subject.split(" ", 1)
    if len(words) == 2 and words[0].lower() in {"a", "an", "the", "one"}:
        return words[1]
    return subject


def with_article(noun_phrase: str) -> str:
    """``"cow"`` -> ``"a cow"``, ``"elephant"`` -> ``"an elephant"``; phrases with a determiner are kept."""
    if not noun_phrase or _has_determiner(noun_phrase):
        return noun_phrase
    return f"{'an' if noun_phrase[0].lower() in 'aeiou' else 'a'} {noun_phrase}"


def title_for(subject: str, materials: list[str]) -> str:
    """``"Cow: crocodile skin, mane in flames"`` (no articles)."""
    core = subject_core(subject)
    title = f"{core[0].upper()}{core[1:]}: {', '.join(subject_core(m) for m in materials)}"
    return truncate(title, 80)


def _has_determiner(phrase: str) -> bool:
    first = phrase.split(" ", 1)[0].lower()
    return first in {"a", "an", "the", "one", "some", "two", "three", "my", "this", "that"} or first.isdigit()


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
