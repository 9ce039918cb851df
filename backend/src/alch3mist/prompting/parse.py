"""A request (tokens of one language) -> the object and its materials, in English.

1. Sentences: the first names the object; a later one adds materials when the first has none ("I'd like a cow.
   Make it gold.").
2. Request verbs, pronouns and politeness are stripped from the start and the end ("genérame", "fammi", "please").
   Besides the grammar's lists, a first word whose translation is a request verb ("erzeuge" -> generate) goes too.
3. The object ends at the first connector that introduces a material: one that always does ("made of", "aus",
   "hecho de", "with", "con", "mit") or a weak one ("in", "of", "de", "di", "em", "van", "av") followed by a
   material noun — "une tasse de café en porcelaine" is a cup of coffee in porcelain, "a statue of a horse in
   bronze" a statue of a horse.
4. The rest splits into material phrases at "and / y / und / , / with …" ("black and white stripes" stays one).
5. Each phrase is translated word by word (multi-word headwords first: "osito de peluche" -> teddy bear), each word
   read in its role (:mod:`.senses`): the object's and a feature's head as a thing (a feature in the context of the
   object: "Federn" on an owl are feathers), a material phrase's head as a material, a word beside the head as an
   adjective (a participle as its verb's English participle: "soplado" -> blown), and rebuilt in English order:
   adjectives before their noun ("cuir noir" -> black leather), "N1 de N2" as a compound ("piel de cocodrilo" ->
   crocodile skin), a colour shade as one adjective ("azul cobalto" -> cobalt blue).
6. Materials named inside the object phrase move to the materials: "a golden cow", "una vaca dorada", "a glass owl",
   "a ceramic vase"; a feature whose head is one countable thing keeps "a" ("a mane in flames").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .grammar import Grammar
from .lexicon import DIRECT, Candidate, Lexicon
from .senses import Context, English, Role
from .text import fold, with_article

__all__ = ["Parsed", "Parser", "Token"]

_SENTENCE_END = frozenset({".", "!", "?", ";"})
_MAX_MATERIALS = 6
_MAX_PHRASE = 3  # longest multi-word headword tried
_BESIDE_HEAD_BONUS = 1.5  # for the adjective reading of a word beside the head noun
_FOLLOWING_ADJECTIVE_BONUS = 3.0  # … right after it in a Romance language
_PLURAL_ENDINGS: dict[str, tuple[str, ...]] = {
    "en": ("s",), "es": ("s",), "pt": ("s",), "fr": ("s", "x"), "it": ("i", "e"), "de": ("n", "e", "er", "s"),
    "nl": ("en", "s"), "sv": ("ar", "er", "or", "na"), "pl": ("ami", "ach", "ów"),
}  # fmt: skip


@dataclass(frozen=True)
class Token:
    """One word or punctuation mark: as written, folded, and whether a space preceded it."""

    text: str
    key: str
    space_before: bool


@dataclass
class Word:
    """A translated word of a phrase."""

    english: str
    kind: str  # noun | adj | of | in | article
    source: str
    known: bool = True  # False: no translation, kept as written
    indefinite: bool = False  # an article "a" (kept inside the object: "a statue of a horse")


@dataclass
class Parsed:
    """What the request asks for, in English; ``untranslated`` lists the source words kept as written."""

    subject: str
    materials: list[str]
    untranslated: list[str] = field(default_factory=list)


class Parser:
    """Parses requests of one language (``lexicon`` None for English)."""

    def __init__(self, grammar: Grammar, lexicon: Lexicon | None, english: English) -> None:
        self.grammar = grammar
        self.lexicon = lexicon
        self.english = english
        self._material_connectors = grammar.made_of | grammar.coated  # "made of", "aus"; "covered in", "bedeckt mit"
        self._untranslated: list[str] = []

    def parse(self, tokens: list[Token]) -> Parsed:
        self._untranslated = []
        # 1. Sentences, without intensifiers ("made entirely of" = "made of")
        tokens = [t for t in tokens if t.key not in self.grammar.intensifiers]
        sentences = [s for s in (self._strip_fillers(s) for s in _sentences(tokens)) if s]
        if not sentences:
            return Parsed("", [])

        # 2. Object and material part of the first sentence
        object_tokens, rest, role = self._split_object(sentences[0])

        # 3. The object, and the materials named in it ("a golden cow", "a glass owl")
        subject_words = self._translate(object_tokens, Role.THING, in_object=True)
        subject_words, named = self._materials_in_object(subject_words)
        head = _head_index(subject_words)
        context = self.english.context(subject_words[head].english) if head is not None else None

        # 4. Its materials and features ("Federn" on an owl are feathers: the object is their context)
        segments = self._segments(rest, role)
        materials = named + [m for m in (self._material(segment, r, context) for segment, r in segments) if m]

        # 5. Later sentences add materials when the first had none ("Make it gold.")
        for sentence in sentences[1:]:
            if materials:
                break
            segments = self._segments(sentence, Role.MATERIAL)
            materials = [m for m in (self._material(segment, r, context) for segment, r in segments) if m]
        unique = list(dict.fromkeys(materials))[:_MAX_MATERIALS]
        return Parsed(self._render(subject_words, keep_article=True), unique, list(dict.fromkeys(self._untranslated)))

    # --- 2. fillers -------------------------------------------------------------------------------------------------

    def _strip_fillers(self, tokens: list[Token]) -> list[Token]:
        changed = True
        while tokens and changed:
            changed = False
            while tokens and not tokens[0].key[:1].isalnum():
                tokens, changed = tokens[1:], True
            while tokens and not tokens[-1].key[:1].isalnum():
                tokens, changed = tokens[:-1], True
            length = _match(tokens, 0, self.grammar.fillers)
            if length:
                tokens, changed = tokens[length:], True
            elif tokens and self._is_request_verb(tokens[0]):
                tokens, changed = tokens[1:], True
            for end in range(min(4, len(tokens) - 1), 0, -1):
                if _match(tokens, len(tokens) - end, self.grammar.fillers) == end:
                    tokens, changed = tokens[:-end], True
                    break
        return tokens

    def _is_request_verb(self, token: Token) -> bool:
        if self.lexicon is None or token.key in self.grammar.articles or not token.key[:1].isalpha():
            return False
        candidates = self.lexicon.word(token.text)
        verbs = [c for c in candidates[:4] if self.english.is_request_verb(c.english.removeprefix("to "))]
        nouns = [c for c in candidates[:4] if "n" in c.pos or "s" in c.pos]
        return bool(verbs) and not nouns

    # --- 3. object | materials --------------------------------------------------------------------------------------

    def _split_object(self, tokens: list[Token]) -> tuple[list[Token], list[Token], Role]:
        """(object, the rest, what the rest starts with: a material after "made of", a feature after "with")."""
        for index in range(1, len(tokens)):
            made_of = _match(tokens, index, self._material_connectors)
            if made_of:
                return tokens[:index], tokens[index + made_of :], Role.MATERIAL
            with_ = _match(tokens, index, self.grammar.with_)
            if with_:
                return tokens[:index], tokens[index + with_ :], Role.THING
            weak = _match(tokens, index, self.grammar.weak_made_of)
            if weak and self._material_follows(tokens[index + weak :]):
                return tokens[:index], tokens[index + weak :], Role.MATERIAL
        return tokens, [], Role.MATERIAL

    def _material_follows(self, tokens: list[Token]) -> bool:
        """The next noun (after articles and adjectives) is a material: "in bronze", "de madera", "aus Gold"."""
        for index, token in enumerate(tokens[:4]):
            if token.key in self.grammar.articles or not token.key[:1].isalnum():
                continue
            if token.key in self.grammar.of or token.key in self.grammar.weak_made_of:
                return False
            _, word = self._content_word(tokens, index, Role.MATERIAL, head=True, context=None)
            if word.kind == "noun":
                return self.english.is_material(word.english) or bool(self.english.material_of_adjective(word.english))
            if self.english.material_of_adjective(word.english):
                return True
        return False

    # --- 4. material segments ---------------------------------------------------------------------------------------

    def _segments(self, tokens: list[Token], role: Role) -> list[tuple[list[Token], Role]]:
        """Split at and / with / made of (not inside "black and white stripes"); each with its role."""
        segments: list[tuple[list[Token], Role]] = [([], role)]
        index = 0
        while index < len(tokens):
            made_of = _match(tokens, index, self._material_connectors)
            with_ = _match(tokens, index, self.grammar.with_)
            joins = _match(tokens, index, self.grammar.and_)
            length = made_of or with_ or joins
            if length and not self._joins_adjectives(tokens, index, length):
                role = Role.MATERIAL if made_of else Role.THING if with_ else role
                segments.append(([], role))
                index += length
                continue
            segments[-1][0].append(tokens[index])
            index += 1
        return [(s, r) for s, r in segments if any(t.key[:1].isalnum() for t in s)]

    def _joins_adjectives(self, tokens: list[Token], index: int, length: int) -> bool:
        if tokens[index].key not in self.grammar.and_ or tokens[index].key == "," or index == 0:
            return False
        before = self._translate(tokens[index - 1 : index], Role.MODIFIER)
        after = self._translate(tokens[index + length : index + length + 1], Role.MODIFIER)
        return bool(before and after) and all(self.english.is_colour(w.english) for w in before + after)

    def _material(self, segment: list[Token], role: Role, context: Context | None) -> str:
        """A material ("molten gold") or a feature ("a mane in flames", "golden feathers") in English.

        A feature whose head is one countable thing takes "a" (the edit reads "give the lamp a glass shade");
        materials, plurals and stuffs ("crocodile skin", "gold veins") take none.
        """
        words = self._translate(segment, role, context=context if role is Role.THING else None)
        head_index = _head_index(words)
        rendered = self._render(words, keep_article=False)
        if (
            head_index is not None
            and words[head_index].known
            and self.english.is_countable_thing(words[head_index].english)
        ):
            return with_article(rendered)
        return rendered

    # --- 5. translation ---------------------------------------------------------------------------------------------

    def _translate(
        self, tokens: list[Token], role: Role, context: Context | None = None, in_object: bool = False
    ) -> list[Word]:
        """Words of a phrase in English order (articles marked, adjectives before nouns, compounds joined).

        The head noun is read in ``role`` (and ``context``); another noun of the object modifies it in any sense
        ("coffee" cup), one in a material or feature phrase is read as a material ("wings of fire").
        """
        words: list[Word] = []
        head = self._head_position(tokens)
        after_role = Role.ANY if in_object or role is Role.MODIFIER else Role.MATERIAL  # "wings of fire"
        alone = sum(t.key[:1].isalnum() and t.key not in self.grammar.articles for t in tokens) == 1
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if not token.key[:1].isalnum():
                index += 1
                continue
            if token.key in self.grammar.articles and index + 1 < len(tokens):
                words.append(Word("a", "article", token.text, indefinite=_indefinite(self.grammar, token.key)))
                index += 1
                continue
            if token.key in self.grammar.of and words:
                words.append(Word("of", "of", token.text))
                index += 1
                continue
            if token.key in self.grammar.weak_made_of and words and index + 1 < len(tokens):
                words.append(Word("in" if self.lexicon is not None else token.key, "in", token.text))  # "on fire"
                index += 1
                continue
            is_head = index == head and role is not Role.MODIFIER
            after = any(w.kind in ("of", "in") for w in words)
            word_role = role if is_head else after_role if after else Role.ANY
            # Romance: a bare word right after its noun is an adjective ("vidrio soplado"): nouns would need "de"
            follows = self.grammar.adjectives_follow and 0 <= head < index and not after
            length, word = self._content_word(
                tokens, index, word_role, is_head, context, noun_only=is_head and alone, follows_noun=follows
            )
            words.append(word)
            index += length
        return self._english_order(words)

    def _head_position(self, tokens: list[Token]) -> int:
        """Where the head noun stands: the first content word in Romance order, else the last (before "of")."""
        content: list[int] = []
        for index, token in enumerate(tokens):
            if token.key in self.grammar.of or token.key in self.grammar.weak_made_of:
                if content:
                    break
                continue
            if token.key[:1].isalnum() and token.key not in self.grammar.articles:
                content.append(index)
        if not content:
            return -1
        return content[0] if self.grammar.adjectives_follow else content[-1]

    def _content_word(
        self,
        tokens: list[Token],
        index: int,
        role: Role,
        head: bool,
        context: Context | None,
        noun_only: bool = False,
        follows_noun: bool = False,
    ) -> tuple[int, Word]:
        """The word at ``index`` (or the multi-word headword starting there) as a noun in ``role`` or an adjective
        (``noun_only``: the phrase's only word, "con rubíes", is its noun)."""
        token = tokens[index]
        context = context if head else None
        # multi-word headwords first ("osito de peluche", "teddy bear")
        for length in range(min(_MAX_PHRASE, len(tokens) - index), 1, -1):
            span = tokens[index : index + length]
            if not all(t.key[:1].isalnum() for t in span):
                continue
            found = self._phrase_candidates([t.text for t in span])
            if found:
                chosen = self.english.choose(found, role, context, " ".join(t.text for t in span))
                english = chosen.candidate.english.lower() if chosen is not None else ""
                # a compound of the right kind only: "silver spoon" (wealth) is no object, "teddy bear" is; a compound
                # beside the head may span it, so it must be a thing or a material
                kinds = [role] if role in (Role.THING, Role.MATERIAL) else [Role.THING, Role.MATERIAL]
                if english and self.english.is_word(english) and any(self.english.fits(english, k) for k in kinds):
                    return length, Word(english, "noun", " ".join(t.text for t in span))
        candidates = self._candidates(token.text)
        if not candidates:
            self._untranslated.append(token.text)
            return 1, Word(token.text, "noun", token.text, known=False)
        source = token.text if self.lexicon is not None else ""
        verbs = self._verbs(token, candidates)  # "dorada" through "dorar": to gild, to brown (read as participles)
        readings = [c for c in candidates if c not in verbs] or candidates
        noun_choice = self.english.choose(readings, role, context, source)
        adjective_choice = self.english.choose(readings + self._participles(token, verbs), Role.MODIFIER, None, source)
        assert noun_choice is not None and adjective_choice is not None
        noun, noun_score = noun_choice.candidate, noun_choice.score
        adjective, adjective_score = adjective_choice.candidate, adjective_choice.score
        if self.grammar.code == "de" and index > 0:  # German capitalises nouns
            if token.text[:1].isupper():
                adjective_score -= 5
            else:
                noun_score -= 5
        if head:
            noun_score += 2
        else:  # a word beside the head noun is more likely its modifier ("vaca dorada": golden, not sea bream)
            adjective_score += _FOLLOWING_ADJECTIVE_BONUS if follows_noun else _BESIDE_HEAD_BONUS
        if adjective_score > noun_score and not noun_only:
            return 1, self._checked(Word(adjective.english.lower(), "adj", token.text))
        english = noun.english.lower()
        if self.lexicon is not None:  # English words keep their number as written
            english = self._number(english, token.text, noun, candidates)
        return 1, self._checked(Word(english, "noun", token.text))

    def _verbs(self, token: Token, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates that translate the verb ``token`` is a participle of (not an adjective of its own)."""
        if self.lexicon is None:
            return []
        infinitives = self.lexicon.infinitives(token.text)
        return [
            c
            for c in candidates
            if c.form.lower() in infinitives
            and not c.pos & {"adj", "a"}
            and _verb(c) in self.english.wordnet.base_forms(_verb(c), "v")  # a verb itself ("melt"), not "molten"
        ]

    def _participles(self, token: Token, verbs: list[Candidate]) -> list[Candidate]:
        """ "soplado" -> blown, "entalhada" -> carved: a participle, read as the English participle of its verb."""
        participles = []
        for candidate in verbs:
            verb = _verb(candidate)
            if " " not in verb:
                participle = self.english.wordnet.past_participle(verb)
                participles.append(
                    Candidate(participle, frozenset({"adj"}), candidate.rank, candidate.route, token.key)
                )
        return participles

    def _number(self, english: str, written: str, chosen: Candidate, candidates: list[Candidate]) -> str:
        """The English noun in the source word's number ("Federn" -> feathers, "bois" -> wood, "yeux" -> eyes)."""
        wordnet = self.english.wordnet
        singular = wordnet.singular(english)
        if self._plural(written, chosen):
            return english if singular != english else wordnet.plural(english)
        return singular

    def _checked(self, word: Word) -> Word:
        """A "translation" that is not English (a dictionary typo, a foreign cross-reference) counts as none."""
        if self.english.is_word(word.english):
            return word
        plain = fold(word.english)  # "café" -> "cafe"
        if self.english.is_word(plain):
            return Word(plain, word.kind, word.source, word.known, word.indefinite)
        self._untranslated.append(word.source)
        return Word(word.source, word.kind, word.source, known=False)

    def _plural(self, written: str, candidate: Candidate) -> bool:
        """The source word is a plural: the dictionary says so, or it is its lemma with a plural ending.

        When the written form is itself a headword ("gespen", "brons"), its lemma must translate the same way for
        the form to be the lemma's plural: "gespen" and "gesp" are both buckle, "brons" is bronze but "bron" a
        spring (simplemma's guess).
        """
        if "pl" in candidate.pos:
            return True
        if self.lexicon is None or not written.lower().endswith(_PLURAL_ENDINGS.get(self.grammar.code, ())):
            return False
        word, form = written.lower(), candidate.form.lower()
        lemma = self.lexicon.lemma(written).lower()
        if word != form:  # found through its lemma or stem
            return len(word) > len(form) or word != lemma
        if word == lemma or len(lemma) > len(word):  # a plural is its singular with an ending ("brons" is not
            return False  # the plural of "bronzen")
        wordnet = self.english.wordnet
        singular = wordnet.singular(candidate.english.lower())
        return singular in {wordnet.singular(c.english.lower()) for c in self.lexicon.english_of(lemma)}

    def _candidates(self, text: str) -> list[Candidate]:
        if self.lexicon is not None:
            return self.lexicon.word(text)
        return [Candidate(text.lower(), frozenset(), 0, DIRECT, text)] if self.english.is_word(text) else []

    def _phrase_candidates(self, words: list[str]) -> list[Candidate]:
        if self.lexicon is not None:
            return self.lexicon.phrase(words)
        phrase = " ".join(words).lower()
        if not self.english.wordnet.base_forms(phrase, "n"):
            return []
        return [Candidate(phrase, frozenset({"n"}), 0, DIRECT, phrase)]

    def _english_order(self, words: list[Word]) -> list[Word]:
        if self.grammar.adjectives_follow:
            words = self._shades(words)
            words = _adjectives_before_nouns(words)
        return _compounds(words) if self.lexicon is not None else words

    def _shades(self, words: list[Word]) -> list[Word]:
        """ "azul cobalto" -> one adjective "cobalt blue" (a colour followed by a bare noun naming its shade)."""
        out: list[Word] = []
        for word in words:
            previous = out[-1] if out else None
            if (
                previous is not None
                and previous.kind == "adj"
                and self.english.is_colour(previous.english)
                and word.kind == "noun"
                and len(out) >= 2
                and out[-2].kind in ("noun", "adj")
            ):
                out[-1] = Word(f"{word.english} {previous.english}", "adj", f"{previous.source} {word.source}")
                continue
            out.append(word)
        return out

    # --- 6. materials inside the object phrase ----------------------------------------------------------------------

    def _materials_in_object(self, words: list[Word]) -> tuple[list[Word], list[str]]:
        head_index = _head_index(words)
        if head_index is None:
            return words, []
        kept: list[Word] = []
        materials: list[str] = []
        pending: list[Word] = []  # adjectives waiting to see whether a material noun follows
        for index, word in enumerate(words):
            if index >= head_index:
                kept.extend(pending)
                pending = []
                kept.append(word)
                continue
            named = self.english.material_of_adjective(word.english) if word.kind == "adj" else None
            if word.kind == "adj" and not named and self.english.is_mainly_material(word.english):
                named = word.english  # an adjective that is a material's name: "a ceramic vase", "a silver spoon"
            if named:
                materials.append(" ".join([*(w.english for w in pending), named]))
                pending = []
            elif word.kind == "noun" and self.english.is_mainly_material(word.english):
                materials.append(" ".join([*(w.english for w in pending), word.english]))
                pending = []
            elif word.kind == "adj":
                pending.append(word)
            else:
                kept.extend(pending)
                pending = []
                kept.append(word)
        return kept, materials

    # --- rendering --------------------------------------------------------------------------------------------------

    def _render(self, words: list[Word], keep_article: bool) -> str:
        parts: list[str] = []
        for index, word in enumerate(words):
            if word.kind == "article":
                if index == 0 and not (keep_article and word.indefinite):
                    continue
                if index > 0 and not word.indefinite:
                    parts.append("the")
                    continue
                parts.append("an" if words[index + 1 :] and words[index + 1].english[:1] in "aeiou" else "a")
                continue
            parts.append(word.english)
        while parts and parts[-1] in ("a", "the", "of", "in"):
            parts.pop()
        return " ".join(parts)


# --- helpers ----------------------------------------------------------------------------------------------------------


def _verb(candidate: Candidate) -> str:
    return candidate.english.lower().removeprefix("to ")


def _sentences(tokens: list[Token]) -> list[list[Token]]:
    sentences: list[list[Token]] = [[]]
    for token in tokens:
        if token.key in _SENTENCE_END:
            sentences.append([])
        else:
            sentences[-1].append(token)
    return [s for s in sentences if s]


def _match(tokens: list[Token], index: int, phrases: frozenset[str]) -> int:
    """Length of the longest phrase of ``phrases`` starting at ``index`` (0 when none)."""
    for length in range(4, 0, -1):
        if index + length <= len(tokens):
            joined = " ".join(t.key for t in tokens[index : index + length])
            if joined in phrases or joined.replace("' ", "'") in phrases:  # "s' il vous plait" = "s'il vous plait"
                return length
    return 0


def _indefinite(grammar: Grammar, article: str) -> bool:
    indefinite = {"a", "an", "one", "un", "una", "une", "uno", "un'", "ein", "eine", "einen", "einem", "einer",
                  "eines", "um", "uma", "een", "'n", "en", "ett"}  # fmt: skip
    return article in indefinite


def _adjectives_before_nouns(words: list[Word]) -> list[Word]:
    """Romance order -> English: "cuir noir" -> "black leather"; adjectives keep their relative order."""
    out: list[Word] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.kind != "noun":
            out.append(word)
            index += 1
            continue
        following = []
        index += 1
        while index < len(words) and words[index].kind == "adj":
            following.append(words[index])
            index += 1
        out.extend([*following, word])
    return out


def _compounds(words: list[Word]) -> list[Word]:
    """ "N1 of N2" without an article -> "N2 N1" ("skin of crocodile" -> "crocodile skin")."""
    out: list[Word] = []
    index = 0
    while index < len(words):
        word = words[index]
        if (
            word.kind == "of"
            and out
            and out[-1].kind == "noun"
            and index + 1 < len(words)
            and words[index + 1].kind in ("noun", "adj")
        ):
            end = index + 1
            while end < len(words) and words[end].kind in ("noun", "adj"):
                end += 1
            modifier = words[index + 1 : end]
            head = out.pop()
            out.extend([*modifier, head])
            index = end
            continue
        out.append(word)
        index += 1
    return out


def _head_index(words: list[Word]) -> int | None:
    """The head noun: the last noun before an "of" / "in" phrase."""
    head = None
    for index, word in enumerate(words):
        if word.kind in ("of", "in") and head is not None:
            break
        if word.kind == "noun":
            head = index
    return head
