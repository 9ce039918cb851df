"""The offline rewriter's strict score on two public tables of requests in nine languages.

* ``offline_requests.tsv`` (86 rows): the development table, the one the rewriter was improved on;
* ``offline_requests_heldout.tsv`` (56 rows): written before the 2026-12 sense-choice work and never tuned on, to
  show whether the fixes generalise (its failures were seen while working, though);
* ``offline_requests_heldout2.tsv`` (49 rows): written after that work was finished and scored once.

A row passes only when ALL hold:
* the language is identified;
* the subject is the expected one and the materials are the expected ones (any order; no leading article);
* no token of the subject or the materials is left untranslated (each is an English word in WordNet or the
  curated tables, and the rewriter reported no untranslated word);
* every material appears in the edit prompt;
* nothing is injected: no instruction-like text ("system", "steps", "ignore", "poem", "=" …) reaches any prompt.

The scores are printed with their failures (docs/prompting.md reports them). The development table must reach the
issue's target, :data:`TARGET` (90 %); each held-out table must stay at or above its floor, two rows below the
score measured on 2026-12 (47/56 = 83.9 % and 43/49 = 87.8 %): three more failing rows fail the test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from alch3mist.prompting.offline import offline_rewriter
from alch3mist.prompting.schema import MaterialPrompt

TABLE = Path(__file__).with_name("offline_requests.tsv")
HELD_OUT = {  # table: floor (the score measured on 2026-12, less two rows)
    Path(__file__).with_name("offline_requests_heldout.tsv"): 0.80,  # 47/56 = 83.9 %
    Path(__file__).with_name("offline_requests_heldout2.tsv"): 0.83,  # 43/49 = 87.8 %
}
TARGET = 0.90  # issue 16; reached on 2026-12: 81/86 = 94.2 %
MIN_ROWS, MIN_LANGUAGES = 60, 8
_INJECTED = re.compile(r"\b(?:system|steps|ignor\w*|instruc\w*|anweisung\w*|poem\w*|poema|vergiss)\b|[={}<>]", re.I)
_ARTICLE = re.compile(r"^(?:a|an|the|some)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Row:
    language: str
    request: str
    subjects: tuple[str, ...]  # accepted alternatives
    materials: tuple[tuple[str, ...], ...]  # one tuple of alternatives per expected material


def read_table(table: Path = TABLE) -> list[Row]:
    rows = []
    for line in table.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        language, request, subject, materials = line.split("\t")
        rows.append(
            Row(
                language,
                request,
                tuple(subject.split("|")),
                tuple(tuple(m.split("|")) for m in materials.split(";")),
            )
        )
    return rows


def strict_problems(row: Row, prompt: MaterialPrompt, notes: list[str]) -> list[str]:
    """Every way the rewrite misses the row (empty: the row passes)."""
    english = offline_rewriter().resources.english
    problems = []
    if prompt.language != row.language:
        problems.append(f"language {prompt.language} != {row.language}")
    subject = _ARTICLE.sub("", prompt.subject.lower())
    if subject not in row.subjects:
        problems.append(f"subject {subject!r} not in {row.subjects}")
    got = sorted(_ARTICLE.sub("", m.lower()) for m in prompt.materials)
    if not _same_materials(got, row.materials):
        problems.append(f"materials {got} != {[m[0] for m in row.materials]}")
    for phrase in [prompt.subject, *prompt.materials]:
        foreign = [w for w in re.findall(r"[^\W\d_]+", phrase) if not english.is_word(w)]
        if foreign:
            problems.append(f"untranslated {foreign} in {phrase!r}")
    if any("no English translation" in note for note in notes):
        problems.append(f"notes: {notes}")
    for material in prompt.materials:
        if material.lower() not in prompt.edit_prompt.lower():
            problems.append(f"material {material!r} missing from the edit prompt")
    for text in (prompt.subject, *prompt.materials, prompt.base_prompt, prompt.edit_prompt, prompt.title):
        if _INJECTED.search(text):
            problems.append(f"injected text in {text!r}")
    return problems


def _same_materials(got: list[str], expected: tuple[tuple[str, ...], ...]) -> bool:
    if len(got) != len(expected):
        return False
    remaining = list(got)
    for alternatives in expected:
        match = next((m for m in remaining if m in alternatives), None)
        if match is None:
            return False
        remaining.remove(match)
    return True


def test_tables_are_large_and_varied_enough() -> None:
    rows = read_table()
    assert len(rows) >= MIN_ROWS
    assert len({row.language for row in rows}) >= MIN_LANGUAGES
    seen = {row.request for row in rows}
    for table in HELD_OUT:
        held_out = read_table(table)
        assert len(held_out) >= 40
        assert {row.language for row in held_out} == {row.language for row in rows}
        assert not seen & {row.request for row in held_out}  # no request in two tables
        seen |= {row.request for row in held_out}


def test_strict_score_reaches_the_target() -> None:
    score, failures = _score(TABLE)
    assert score >= TARGET, "\n".join(failures)


@pytest.mark.parametrize("table", list(HELD_OUT), ids=lambda path: path.stem)
def test_held_out_score_stays_above_its_floor(table: Path) -> None:
    score, failures = _score(table)
    assert score >= HELD_OUT[table], "\n".join(failures)


def _score(table: Path) -> tuple[float, list[str]]:
    rows = read_table(table)
    rewriter = offline_rewriter()
    failures = []
    for row in rows:
        prompt, notes = rewriter.rewrite(row.request)
        problems = strict_problems(row, prompt, notes)
        if problems:
            failures.append(f"{row.language} {row.request!r}: {'; '.join(problems)}")
    score = 1 - len(failures) / len(rows)
    print(f"\n{table.name}: strict score {len(rows) - len(failures)}/{len(rows)} = {score:.1%}")
    for failure in failures:
        print("  FAIL", failure)
    return score, failures


@pytest.mark.parametrize("request_text", ["Alch3mist, ein Teddybär aus geschmolzenem Gold", "una vaca"])
def test_the_checker_fails_untranslated_words(request_text: str) -> None:
    """The checker itself: a foreign word in the subject or a wrong material is a failure."""
    prompt, notes = offline_rewriter().rewrite(request_text)
    wrong = prompt.model_copy(update={"subject": "ein Teddybär", "materials": ["geschmolzenem Gold"]})
    row = Row("de", request_text, ("teddy bear",), (("molten gold",),))
    problems = strict_problems(row, wrong, notes)
    assert any("untranslated" in p for p in problems)
    assert any("subject" in p for p in problems)
