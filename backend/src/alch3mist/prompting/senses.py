"""The English side: which of a dictionary's translations is meant, and what an English word is (a material, a
colour, a thing). Facts come from WordNet (:mod:`.wordnet`); the curated tables of :mod:`.vocabulary` add what
WordNet does not say well (moss and porcelain as materials, "golden" -> gold).

A dictionary entry often lists several translations, in no useful order ("fur, hide, skin", "timber, wood",
"frited / melted, molten / smelted"). :meth:`English.choose` scores each for the role the word plays in the request:
the head of a material phrase prefers a material, the subject prefers a concrete thing, a modifier prefers an
adjective; then common words (SemCor tag counts) over rare ones, words the English-to-X dictionary translates back
to the same source word, and the dictionary's own order last.
"""

from __future__ import annotations

import math
from enum import Enum
from functools import lru_cache

from . import vocabulary as vocab
from .lexicon import Candidate
from .wordnet import WordNet

__all__ = ["English", "Role"]


class Role(Enum):
    """What a word is expected to be where it stands."""

    THING = "thing"  # the subject's head noun
    MATERIAL = "material"  # a material phrase's head noun
    MODIFIER = "modifier"  # an adjective (colour, finish, state)
    ANY = "any"


# Usage labels (Ding / FreeDict) of senses a request for an object hardly means: slang, regional, figurative …
_MARKED = frozenset(
    {"[coll.]", "[slang]", "[ugs.]", "[fig.]", "[übtr.]", "[pej.]", "[vulg.]", "[obs.]", "[dated]", "[humor.]",
     "[dt.]", "[fin.]", "[euphem.]", "[rare]", "[selten]", "[poet.]", "[geh.]"}
)  # fmt: skip
_REPEAT_BONUS = 1.0  # per other sense giving the same translation ("Krone": crown ×3, top ×1)

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
        return self._curated_material(noun) or self._wordnet_material(noun, first_only=False)

    def is_mainly_material(self, noun: str) -> bool:
        """The word's main sense is a material ("gold", "glass", "moss"; not "crocodile" nor "cup")."""
        return self._curated_material(noun) or self._wordnet_material(noun, first_only=True)

    def material_of_adjective(self, adjective: str) -> str | None:
        """``"golden"`` -> ``"gold"``, ``"wooden"`` -> ``"wood"``: adjectives that name a material."""
        return vocab.MATERIAL_ADJECTIVES.get(adjective.lower())

    def is_colour(self, word: str) -> bool:
        return word.lower() in vocab.COLOURS

    def is_request_verb(self, word: str) -> bool:
        return word.lower() in _REQUEST_VERBS

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

    # --- choosing a translation -------------------------------------------------------------------------------------

    def choose(self, candidates: list[Candidate], role: Role, back: set[str] | None = None) -> Candidate | None:
        """The candidate that fits ``role`` best (None when there is none)."""
        if not candidates:
            return None
        back = back or set()
        repeats: dict[str, int] = {}
        for candidate in candidates:
            repeats[candidate.english.lower()] = repeats.get(candidate.english.lower(), 0) + 1

        def total(c: Candidate) -> float:
            return self.score(c, role, c.english.lower() in back) + _REPEAT_BONUS * (repeats[c.english.lower()] - 1)

        return max(candidates, key=lambda c: (total(c), -c.rank))

    def score(self, candidate: Candidate, role: Role, translates_back: bool) -> float:
        english = candidate.english.lower()
        words = english.split()
        if len(words) > 3 or not self.is_word(english):
            return -10.0 - candidate.rank
        kinds = self._kinds_of_phrase(english)
        score = 2.0 if len(words) == 1 or self.wordnet.base_forms(english, "n") else 1.0
        score += self._role_fit(english, kinds, candidate.pos, role)
        score += 0.8 * math.log1p(self._frequency(english, role))
        score += 2.0 if translates_back else 0.0
        score += 0.3 if candidate.direct else 0.0
        score -= 1.5 if candidate.pos & _MARKED else 0.0
        return score - 0.15 * candidate.rank

    def _role_fit(self, english: str, kinds: set[str], tags: frozenset[str], role: Role) -> float:
        tagged_noun = bool(tags & {"n", "s", "masc", "fem", "neut", "noun"})
        tagged_adjective = bool(tags & {"adj", "a"})
        if role is Role.MODIFIER:
            return 2.0 if ("a" in kinds or tagged_adjective or self.material_of_adjective(english)) else -1.0
        fit = 1.0 if ("n" in kinds or tagged_noun) else -2.0
        if tags & {"v", "vt", "vi"} and not tagged_noun:
            fit -= 1.0
        if role is Role.MATERIAL:
            fit += 2.5 if self._curated_material(english) else 1.5 if self.is_material(english) else 0.0
        elif role is Role.THING and "n" in kinds:
            fit += 1.5 if self.wordnet.is_concrete(english.split()[-1]) else 0.0
        return fit

    def _frequency(self, english: str, role: Role) -> int:
        """SemCor count of the word, or of the whole phrase ("mine car" is rare even though "car" is not)."""
        pos = "a" if role is Role.MODIFIER else "n"
        return sum(self.wordnet.frequency(form, pos) for form in self._base_forms(english, pos))

    def _base_forms(self, word: str, pos: str) -> list[str]:
        return self.wordnet.base_forms(word, pos) or [word]

    def _kinds_of_phrase(self, english: str) -> set[str]:
        if " " in english and self.wordnet.base_forms(english, "n"):
            return {"n"}
        return self.kinds(english.split()[-1])

    def _curated_material(self, noun: str) -> bool:
        key = noun.lower()
        return key in vocab.MATERIAL_DETAILS and key not in vocab.ALSO_CREATURES

    def _wordnet_material(self, noun: str, first_only: bool) -> bool:
        return _cached_material(self.wordnet, noun.lower(), first_only)


@lru_cache(maxsize=8192)
def _cached_material(wordnet: WordNet, noun: str, first_only: bool) -> bool:
    return wordnet.is_substance_first(noun) if first_only else wordnet.is_material(noun)
