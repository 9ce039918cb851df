"""The English side: which of a dictionary's translations is meant, and what an English word is (a material, a
colour, a thing). Facts come from WordNet (:mod:`.wordnet`); the curated tables of :mod:`.vocabulary` add what
WordNet does not say well (moss and porcelain as materials, "golden" -> gold).

A dictionary entry often lists several translations, in no useful order ("Krone: top, crown", "steen: brick, gem,
jewel, stone", "vase: vase, vessel, mud"). :meth:`English.choose` scores each for the role the word plays:

1. **Semantic class of its senses.** WordNet files every noun sense under a lexicographer class. The object and
   its features want a thing one can model (``noun.artifact``, ``noun.animal``, ``noun.plant``, ``noun.body``,
   ``noun.object``, ``noun.food``, ``noun.person``); a material phrase wants a material (``noun.substance``, or a
   sense under material / fabric / metal / stone / gem …); a modifier wants an adjective (colours first). The
   fit is the SemCor tag count of the senses of the right class, so a word whose fitting senses are never used
   ("top" as a spinning top) loses to one whose are ("crown" the headdress), and a word with no sense of the right
   class ("mud" for an object) loses to any that has one.
2. **Agreement of the sources.** A translation given by several routes (the X-eng dictionary, the English-to-X one
   read backwards, the dictionaries of another language: :mod:`.lexicon`) or by several senses of one entry is
   more likely meant.
3. **No mere category.** A translation that is a WordNet hypernym of another one ("vessel", "container" beside
   "vase" and "jug") is the dictionary describing the word, not translating it.
4. **Context.** For a feature, a sense whose gloss or hypernyms mention the object (or that the object's gloss
   mentions) wins: "Federn" on an owl are feathers ("… the external covering of birds"), "défenses" of an
   elephant are tusks ("… especially in an elephant"), the "pantalla" of a lamp is a lamp shade.
5. Slang, regional and figurative senses (Ding's ``[coll.]``, ``[slang]``, ``[fig.]`` labels) lose; the
   dictionary's own order breaks ties.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from . import vocabulary as vocab
from .lexicon import DIRECT, INVERSE, Candidate
from .text import fold
from .wordnet import THING_LEXNAMES, NounSense, WordNet

__all__ = ["Choice", "Context", "English", "Role"]


class Role(Enum):
    """What a word is expected to be where it stands."""

    THING = "thing"  # the head noun of the object or of a feature
    MATERIAL = "material"  # the head noun of a material phrase, or the noun after "of / in" in a feature
    MODIFIER = "modifier"  # an adjective (colour, finish, state)
    ANY = "any"  # a noun modifying another inside the object ("coffee" in "coffee cup")


@dataclass(frozen=True)
class Context:
    """The request's object, as words (lemmatised) a related sense may share with it."""

    names: frozenset[str]  # the object's words, synonyms and hypernyms ("owl", "raptor", "bird", "prey")
    gloss: frozenset[str]  # the words of its definitions ("… with hawk-like beak and claws … front-facing eyes")


@dataclass(frozen=True)
class Choice:
    """The chosen translation and its score (to compare a word's noun and adjective readings)."""

    candidate: Candidate
    score: float


# Usage labels (Ding / FreeDict) of senses a request for an object hardly means: slang, regional, figurative …
_MARKED = frozenset(
    {"[coll.]", "[slang]", "[ugs.]", "[fig.]", "[übtr.]", "[pej.]", "[vulg.]", "[obs.]", "[dated]", "[humor.]",
     "[dt.]", "[fin.]", "[euphem.]", "[rare]", "[selten]", "[poet.]", "[geh.]"}
)  # fmt: skip
_NOUN_TAGS = frozenset({"n", "s", "masc", "fem", "neut", "noun", "m", "f", "nm", "nf"})
_VERB_TAGS = frozenset({"v", "vt", "vi", "intr", "tr", "verb"})
_ADJECTIVE_TAGS = frozenset({"adj", "a"})
_ROUTE_WEIGHT = {DIRECT: 1.0, INVERSE: 0.8}  # any other route (through another language): 0.6
_OWN_ROUTES = frozenset(_ROUTE_WEIGHT)
_OTHER_ROUTE_WEIGHT = 0.6
_FOREIGN_ONLY_PENALTY = 1.0  # found only through another language while the language's own dictionaries offer some
_REPEAT_WEIGHT = 0.5  # per other sense of one entry giving the same translation ("Krone": crown ×3)
_MARKED_PENALTY = 3.0
_GENERIC_PENALTY = 1.5
_COGNATE_BONUS = 1.0
_COGNATE_SIMILARITY = 0.6  # longest common subsequence / longer word: "vaso" ~ vase, "Krone" ~ crown
_CONTEXT_BONUS = 2.0
_UNTAGGED_SENSE = 0.5  # a sense SemCor never tagged still counts a little
_CONTEXT_SENSES = 3  # the object's senses that count (most frequent first)
_STOP_WORDS = frozenset(
    {"a", "an", "the", "of", "or", "and", "in", "on", "with", "for", "to", "by", "that", "which", "used", "as", "from",
     "at", "is", "it", "its", "be", "has", "have", "any", "one", "part", "thing", "object", "something", "such",
     "especially", "usually", "often", "other", "form", "kind", "type", "made", "make", "small", "large", "long",
     "whole", "unit", "instrumentality", "artifact", "artefact", "device", "structure", "covering", "person",
     "organism", "being", "matter", "substance", "material", "animal", "plant", "entity", "physical", "also",
     "into", "out", "are", "was", "not", "no", "like", "more", "most", "some", "very", "than", "etc"}
)  # fmt: skip
_WORD = re.compile(r"[a-z]+")

_REQUEST_VERBS = frozenset(
    {"generate", "create", "make", "draw", "render", "build", "design", "give", "show", "produce", "sculpt", "model",
     "want", "like", "need", "imagine", "paint", "wish", "print", "craft"}
)  # fmt: skip


class English:
    """Questions about English words (WordNet + the curated material tables)."""

    def __init__(self, wordnet: WordNet) -> None:
        self.wordnet = wordnet

    # --- what a word is ---------------------------------------------------------------------------------------------

    def is_word(self, text: str) -> bool:
        """Every word of ``text`` is English (WordNet, the curated tables, or a grammar word)."""
        words = text.lower().replace("-", " ").split()
        if " ".join(words) in vocab.MATERIAL_DETAILS:
            return True
        return bool(words) and all(
            w in vocab.ENGLISH_GRAMMAR_WORDS or w in vocab.MATERIAL_DETAILS or self.wordnet.is_word(w) for w in words
        )

    def kinds(self, word: str) -> set[str]:
        """WordNet parts of speech of ``word``: n (noun), a (adjective), v (verb), r (adverb)."""
        return {pos for pos in "navr" if self.wordnet.base_forms(word, pos)}

    def is_material(self, noun: str) -> bool:
        """Any sense is a material (for the head of a material phrase)."""
        return self._curated_material(noun) or _cached_material(self.wordnet, noun.lower(), False)

    def is_mainly_material(self, noun: str) -> bool:
        """The word's main sense is a material ("gold", "glass", "moss"; not "crocodile" nor "cup")."""
        return self._curated_material(noun) or _cached_material(self.wordnet, noun.lower(), True)

    def material_of_adjective(self, adjective: str) -> str | None:
        """``"golden"`` -> ``"gold"``, ``"wooden"`` -> ``"wood"``: adjectives that name a material."""
        return vocab.MATERIAL_ADJECTIVES.get(adjective.lower())

    def is_colour(self, word: str) -> bool:
        return word.lower() in vocab.COLOURS

    def is_request_verb(self, word: str) -> bool:
        return word.lower() in _REQUEST_VERBS

    def fits(self, noun: str, role: Role) -> bool:
        """Some sense of ``noun`` is of the kind ``role`` wants (a thing, a material; anything for ANY)."""
        if role in (Role.ANY, Role.MODIFIER):
            return True
        if role is Role.MATERIAL and self._curated_material(self.wordnet.singular(noun)):
            return True
        return any(self._fits(sense, role) for sense in self._senses(noun))

    def is_countable_thing(self, noun: str) -> bool:
        """A singular noun with a sense that is a thing and none that is a stuff: it takes "a" ("a mane", "a glass
        shade"; not "crocodile skin", "fur", "gold veins")."""
        if self.wordnet.is_plural(noun) or self.is_material(noun):
            return False
        return any(sense.synset.lexname in THING_LEXNAMES for sense in self._senses(noun))

    def details(self, material: str) -> str | None:
        """The curated texture / colour / finish phrase for a material phrase's most specific known word."""
        words = material.lower().replace("-", " ").split()
        for size in range(len(words), 0, -1):
            for start in range(len(words) - size, -1, -1):
                key = " ".join(words[start : start + size])
                key = vocab.MATERIAL_ADJECTIVES.get(key, key)
                if key in vocab.MATERIAL_DETAILS:
                    return vocab.MATERIAL_DETAILS[key]
        return None

    # --- context ----------------------------------------------------------------------------------------------------

    def context(self, noun: str) -> Context:
        """The object ``noun`` as its main senses' words and hypernyms, and the words of their definitions."""
        names: set[str] = set(self._lemmas(noun))
        gloss: set[str] = set()
        for sense in self._senses(noun)[:_CONTEXT_SENSES]:
            names.update(self._synset_words(sense.synset.offset, with_gloss=False))
            names.update(w for offset in sense.synset.hypernyms for w in self._synset_words(offset, with_gloss=False))
            gloss.update(self._synset_words(sense.synset.offset, with_gloss=True))
        return Context(frozenset(names - _STOP_WORDS), frozenset(gloss - _STOP_WORDS))

    # --- choosing a translation -------------------------------------------------------------------------------------

    def choose(
        self, candidates: list[Candidate], role: Role, context: Context | None = None, source: str = ""
    ) -> Choice | None:
        """The candidate that fits ``role`` best (None when there is none); ``source`` is the word as written."""
        readings = _readings(candidates, self.wordnet)
        if not readings:
            return None
        generic = self._generic(readings, role)
        own = any(reading.routes & _OWN_ROUTES for reading in readings)
        scored = [
            (
                self._score(reading, role, context, reading.english.lower() in generic, own, source),
                -reading.rank,
                index,
                reading,
            )
            for index, reading in enumerate(readings)
        ]
        best = max(scored, key=lambda item: (item[0], item[1], -item[2]))
        return Choice(best[3].candidate, best[0])

    def _score(
        self, reading: _Reading, role: Role, context: Context | None, generic: bool, own: bool, source: str
    ) -> float:
        english = reading.english.lower()
        words = english.split()
        if len(words) > 3 or not self.is_word(english):
            return -10.0 - reading.rank
        # a word, or a phrase English has as one ("teddy bear"); a made-up description ("ceramic material") less so
        score = 2.0 if len(words) == 1 or self.wordnet.base_forms(english, "n") else 0.0
        score += self._role_fit(english, reading.pos, role)
        score += sum(_ROUTE_WEIGHT.get(route, _OTHER_ROUTE_WEIGHT) for route in reading.routes)
        if own and not reading.routes & _OWN_ROUTES:  # the language's own dictionaries first, other routes confirm
            score -= _FOREIGN_ONLY_PENALTY
        score += _REPEAT_WEIGHT * min(reading.repeats - 1, 2)
        score -= 0.15 * min(reading.rank, 10)
        score -= _MARKED_PENALTY if reading.marked else 0.0
        score -= _GENERIC_PENALTY if generic else 0.0
        score += _COGNATE_BONUS if source and _cognates(source, english) else 0.0
        if context is not None and role is not Role.MODIFIER and self._related(english, role, context):
            score += _CONTEXT_BONUS
        return score

    def _role_fit(self, english: str, tags: frozenset[str], role: Role) -> float:
        if role is Role.MODIFIER:
            return self._adjective_fit(english, tags)
        senses = self._senses(english)
        if not senses:  # not an English noun
            return (0.0 if tags & _NOUN_TAGS else -2.0) - (1.0 if tags & _VERB_TAGS else 0.0)
        if role is Role.ANY:
            return 1.0 + 0.8 * math.log1p(sum(s.count for s in senses))
        curated = role is Role.MATERIAL and self._curated_material(self.wordnet.singular(english))
        fitting = senses if curated else [s for s in senses if self._fits(s, role)]
        if not fitting:
            return -1.5
        # how often the fitting senses are used, and their share of the word's use (an untagged sense counts a little)
        share = sum(s.count + _UNTAGGED_SENSE for s in fitting) / sum(s.count + _UNTAGGED_SENSE for s in senses)
        return 1.0 + 0.8 * math.log1p(sum(s.count for s in fitting)) + 1.5 * share + (1.0 if curated else 0.0)

    def _adjective_fit(self, english: str, tags: frozenset[str]) -> float:
        adjective = bool(
            "a" in self.kinds(english.split()[-1]) or tags & _ADJECTIVE_TAGS or self.material_of_adjective(english)
        )
        if not adjective:
            return -1.0
        colour = 1.0 if self.is_colour(english) or self.material_of_adjective(english) else 0.0
        return 2.0 + colour + 0.5 * math.log1p(self.wordnet.frequency(english, "a"))

    def _fits(self, sense: NounSense, role: Role) -> bool:
        if role is Role.MATERIAL:
            return self.wordnet.is_material_synset(sense.synset)
        return sense.synset.lexname in THING_LEXNAMES

    def _generic(self, readings: list[_Reading], role: Role) -> set[str]:
        """Translations that are a hypernym of another translation's sense of the right class."""
        if role is Role.MODIFIER or len(readings) < 2:
            return set()
        fitting: dict[str, set[int]] = {}
        for reading in readings:
            english = reading.english.lower()
            if english in fitting or len(english.split()) > 3:
                continue
            senses = [s for s in self._senses(english)[:4] if role is Role.ANY or self._fits(s, role)]
            fitting[english] = {s.synset.offset for s in senses}
        generic = set()
        for english, offsets in fitting.items():
            below = 0
            for other, other_offsets in fitting.items():
                if other == english or not offsets:
                    continue
                above = {a for o in other_offsets for a in self.wordnet.ancestors(o) if a not in other_offsets}
                below += bool(offsets & above)
            if below >= 2:  # a category over several of the other translations: "vessel" over "vase" and "jug"
                generic.add(english)
        return generic

    def _related(self, english: str, role: Role, context: Context) -> bool:
        """The object's definition names the translation ("owl: … front-facing eyes"), or a sense of the
        translation (of the right class) names the object or its kind ("feather: … the covering of birds")."""
        if set(self._lemmas(english)) & (context.names | context.gloss):
            return True
        for sense in self._senses(english):
            if role is not Role.ANY and not self._fits(sense, role):
                continue
            if set(self._synset_words(sense.synset.offset, with_gloss=True)) & context.names:
                return True
        return False

    # --- WordNet helpers --------------------------------------------------------------------------------------------

    def _senses(self, english: str) -> list[NounSense]:
        """Noun senses of a phrase (when WordNet has it: "teddy bear") or of its head word ("glass shade")."""
        senses = self.wordnet.noun_senses(english)
        if not senses and " " in english:
            senses = self.wordnet.noun_senses(english.split()[-1])
        return senses

    def _synset_words(self, offset: int, with_gloss: bool) -> list[str]:
        synset = self.wordnet.synset(offset)
        definition = synset.gloss.split('"', 1)[0]  # the definition, without the example sentences
        text = " ".join(synset.words) + (" " + definition if with_gloss else "")
        return [lemma for token in _WORD.findall(text.lower()) for lemma in self._lemmas(token)]

    def _lemmas(self, word: str) -> list[str]:
        return [w for token in word.lower().split() for w in _noun_lemma(self.wordnet, token)]

    def _curated_material(self, noun: str) -> bool:
        key = noun.lower()
        return key in vocab.MATERIAL_DETAILS and key not in vocab.ALSO_CREATURES


@dataclass
class _Reading:
    """One English translation with all the evidence for it."""

    english: str
    candidate: Candidate  # its best-ranked occurrence
    pos: frozenset[str]
    routes: set[str]
    rank: int
    repeats: int  # senses of one direct entry that give it
    marked: bool  # every occurrence is slang / regional / figurative …


def _readings(candidates: Iterable[Candidate], wordnet: WordNet) -> list[_Reading]:
    """The candidates grouped by English word (a plural with its singular: "feathers" is "feather")."""
    readings: dict[str, _Reading] = {}
    repeats: dict[tuple[str, str, str], int] = {}
    for candidate in candidates:
        key = _singular(wordnet, candidate.english.lower())
        marked = bool(candidate.pos & _MARKED)
        repeats[(key, candidate.route, candidate.form)] = repeats.get((key, candidate.route, candidate.form), 0) + 1
        reading = readings.get(key)
        if reading is None:
            readings[key] = _Reading(
                candidate.english, candidate, candidate.pos, {candidate.route}, candidate.rank, 1, marked
            )
            continue
        reading.routes.add(candidate.route)
        reading.pos |= candidate.pos
        reading.marked = reading.marked and marked
        if candidate.rank < reading.rank and (candidate.direct or not reading.candidate.direct):
            reading.candidate, reading.rank = candidate, candidate.rank
    for (key, _, _), count in repeats.items():
        readings[key].repeats = max(readings[key].repeats, count)
    return list(readings.values())


def _cognates(source: str, english: str) -> bool:
    """The translation looks like the word (a cognate: "vaso" ~ vase, "Krone" ~ crown, "steen" ~ stone)."""
    a, b = fold(source.lower()).replace(" ", ""), english.lower().replace(" ", "")  # "Teddybär" ~ teddy bear
    if min(len(a), len(b)) < 3:
        return False
    return _common_subsequence(a, b) / max(len(a), len(b)) >= _COGNATE_SIMILARITY


def _common_subsequence(a: str, b: str) -> int:
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if char == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


@lru_cache(maxsize=8192)
def _singular(wordnet: WordNet, english: str) -> str:
    return wordnet.singular(english) if wordnet.is_plural(english) else english


@lru_cache(maxsize=8192)
def _noun_lemma(wordnet: WordNet, token: str) -> tuple[str, ...]:
    forms = wordnet.base_forms(token, "n")
    return (forms[-1] if forms else token,)


@lru_cache(maxsize=8192)
def _cached_material(wordnet: WordNet, noun: str, first_only: bool) -> bool:
    return wordnet.is_substance_first(noun) if first_only else wordnet.is_material(noun)
