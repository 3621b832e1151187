"""The labelled sets the matcher is calibrated and judged on (bench/data/*.jsonl) are well-formed and name topics the
knowledge base ships; the held-out sets share no message with the sets the thresholds are fitted on."""

import json
from pathlib import Path

import pytest

from bench.calibrate import DEFAULT_DATA
from knowledge import service
from knowledge.outside import load_subjects
from tests.conftest import REPO

DATA = REPO / "bench" / "data"
HOLDOUTS = (DATA / "holdout.jsonl", DATA / "holdout2.jsonl")
EXPECTS = {"answer", "not_answer", "handoff", "greeting"}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.jsonl")), ids=lambda p: p.name)
def test_rows_are_well_formed_and_name_shipped_topics(path):
    faq = {e.id for e in service.default_entries()}
    outside = set(load_subjects())
    seen: set[str] = set()
    for number, row in enumerate(rows(path), 1):
        where = f"{path.name} row {number}: {row}"
        assert isinstance(row.get("text"), str) and row["text"].strip(), where
        assert row["text"] not in seen, f"duplicate text, {where}"
        seen.add(row["text"])
        assert row.get("expect") in EXPECTS, where
        assert isinstance(row.get("style"), str) and row["style"], where
        if row["expect"] == "answer":
            assert row.get("topic") in faq, f"not a shipped FAQ topic, {where}"
        elif "topic" in row:
            assert row["topic"] in outside, f"not a shipped outside subject, {where}"
        if row["style"] == "outside":
            assert row["expect"] == "not_answer" and "topic" in row, where
        for key in ("src", "source"):
            if key in row:
                assert row[key].startswith(("http", "composed")), where


@pytest.mark.parametrize("holdout", HOLDOUTS, ids=lambda p: p.name)
def test_holdout_shares_no_message_with_the_fitting_sets(holdout):
    fitted = {row["text"] for path in DEFAULT_DATA for row in rows(path)}
    held = {row["text"] for row in rows(holdout)}
    assert holdout not in DEFAULT_DATA
    assert held, "the held-out set is empty"
    assert not held & fitted, held & fitted
