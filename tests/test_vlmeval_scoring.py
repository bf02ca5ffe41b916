"""kore-bench's VLMEvalKit scoring against numbers VLMEvalKit's own code computed on the same predictions
(``tests/fixtures/vlmeval/make_fixtures.py`` wrote ``expected.json``; VLMEvalKit is never imported here)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kore_bench.vlmeval import extract_option, extract_yes_no, headline, read_table, score_table

FIXTURES = Path(__file__).parent / "fixtures" / "vlmeval"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _by_split(rows: list[dict]) -> dict:
    return {r.get("split", ""): {k: v for k, v in r.items() if k != "split"} for r in rows}


def _same(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if value is None:
            assert math.isnan(ours[key]), key
        else:
            assert ours[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize("benchmark", sorted(EXPECTED["benchmarks"]))
def test_tables_match_vlmevalkit(benchmark: str) -> None:
    scored = score_table(benchmark, read_table(FIXTURES / f"{benchmark}.tsv"))
    ours, theirs = _by_split(scored.table), _by_split(EXPECTED["benchmarks"][benchmark])
    assert set(ours) == set(theirs)
    for split in theirs:
        _same(ours[split], theirs[split])


def test_yes_no_extraction_matches_vlmevalkit() -> None:
    cases = EXPECTED["extraction"]["yes_no"]
    assert [extract_yes_no(c["prediction"]) for c in cases] == [c["extracted"] for c in cases]
    assert extract_yes_no("I am not sure.") == "Unknown"  # not "No"


def test_option_extraction_matches_vlmevalkit() -> None:
    cases = EXPECTED["extraction"]["option"]
    assert [extract_option(c["prediction"], c["choices"]) for c in cases] == [c["extracted"] for c in cases]
