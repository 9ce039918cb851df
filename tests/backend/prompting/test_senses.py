"""Sense choice on the installed English WordNet, with candidate lists as the dictionaries give them.

Each case isolates one principle of :mod:`alch3mist.prompting.senses` (the class of the senses, their use, the
agreement of sources, categories, context, cognates, labels), so a failure names the principle that broke.
"""

from __future__ import annotations

import pytest
from alch3mist.prompting.lexicon import DIRECT, INVERSE, Candidate
from alch3mist.prompting.offline import offline_rewriter
from alch3mist.prompting.senses import English, Role


@pytest.fixture(scope="module")
def english() -> English:
    return offline_rewriter().resources.english


def _direct(*words: str, pos: frozenset[str] = frozenset()) -> list[Candidate]:
    return [Candidate(word, pos, rank, DIRECT, "x") for rank, word in enumerate(words)]


def _chosen(english: English, candidates: list[Candidate], role: Role, **options: object) -> str:
    choice = english.choose(candidates, role, **options)  # type: ignore[arg-type]
    assert choice is not None
    return choice.candidate.english


def test_the_object_is_a_thing_not_a_substance(english: English) -> None:
    assert _chosen(english, _direct("mud", "vase"), Role.THING) == "vase"  # French "vase": mud first, vase second


def test_a_word_whose_thing_senses_are_never_used_loses(english: English) -> None:
    # "Krone": top (a location, mostly) and crown (the headdress); no context, no cognate
    assert _chosen(english, _direct("top", "crown"), Role.THING) == "crown"


def test_a_material_phrase_wants_a_material(english: English) -> None:
    assert _chosen(english, _direct("jewel", "stone"), Role.MATERIAL) == "stone"
    assert _chosen(english, _direct("pottery", "ceramic"), Role.MATERIAL) == "ceramic"


def test_a_modifier_wants_an_adjective_and_colours_first(english: English) -> None:
    assert _chosen(english, _direct("minim", "white"), Role.MODIFIER) == "white"


def test_a_category_over_other_translations_loses(english: English) -> None:
    candidates = _direct("container", "vessel", "vase", "jug")
    assert _chosen(english, candidates, Role.THING) == "vase"  # container and vessel are above vase and jug


def test_sources_that_agree_win(english: English) -> None:
    # "bowl" and "basin" fit about as well; a second and a third source decide
    one_source = [Candidate("bowl", frozenset(), 0, DIRECT, "x"), Candidate("basin", frozenset(), 1, DIRECT, "x")]
    agreeing = [Candidate("basin", frozenset(), 0, INVERSE, "x"), Candidate("basin", frozenset(), 0, "de", "x")]
    assert _chosen(english, one_source, Role.THING) == "bowl"
    assert _chosen(english, one_source + agreeing, Role.THING) == "basin"


def test_a_feature_is_read_in_the_context_of_the_object(english: English) -> None:
    candidates = _direct("springs", "pens", "tongues", "feathers", pos=frozenset({"pl"}))
    assert _chosen(english, candidates, Role.THING, context=english.context("owl")) == "feathers"
    assert _chosen(english, _direct("defence", "tusk"), Role.THING, context=english.context("elephant")) == "tusk"


def test_a_cognate_of_the_written_word_wins_a_tie(english: English) -> None:
    assert _chosen(english, _direct("carafe", "bottle"), Role.THING, source="botella") == "bottle"


def test_slang_senses_lose(english: English) -> None:
    slang = Candidate("brass", frozenset({"[slang]"}), 0, DIRECT, "x")  # German "Moos": moss, and money in slang
    candidates = [slang, Candidate("moss", frozenset(), 5, DIRECT, "x")]
    assert _chosen(english, candidates, Role.MATERIAL) == "moss"


def test_what_takes_an_article(english: English) -> None:
    assert english.is_countable_thing("mane") and english.is_countable_thing("shade")
    assert not english.is_countable_thing("skin")  # "give the cow crocodile skin"
    assert not english.is_countable_thing("feathers") and not english.is_countable_thing("gold")
