"""Quality gates: the public dev set (when ../shared is present) and the project's own calibration set,
run through the same path as `merchant-assist triage`."""

import json
from pathlib import Path

import pytest

from bot.bootstrap import prepare_database
from bot.triage import make_triage_router, triage_one
from tests.conftest import REPO, SHARED

DEV_SET = SHARED / "eval" / "dev.jsonl"
CALIBRATION_SET = REPO / "bench" / "data" / "calibration.jsonl"
ANSWERING = {"answer", "guide"}


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def triaged(tmp_path_factory):
    """Run a labelled set through triage on a fresh SQLite database."""
    monkeypatch = pytest.MonkeyPatch()
    db = tmp_path_factory.mktemp("eval") / "eval.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.delenv("REDIS_URL", raising=False)
    from tests.conftest import clear_process_caches

    clear_process_caches()
    prepare_database()
    router = make_triage_router()

    def run(rows: list[dict]) -> list[tuple[dict, dict]]:
        return [(row, triage_one(router, row["text"], n)) for n, row in enumerate(rows, 1)]

    yield run
    monkeypatch.undo()
    clear_process_caches()


def score(pairs: list[tuple[dict, dict]]) -> dict:
    """The figures of ../shared/eval/score_triage.py."""
    answer_rows = [(e, a) for e, a in pairs if e["expect"] == "answer"]
    right = sum(a["action"] in ANSWERING and a["topic"] == e["topic"] for e, a in answer_rows)
    wrong = sum(
        a["action"] in ANSWERING and (e["expect"] != "answer" or a["topic"] != e.get("topic")) for e, a in pairs
    )
    out_of_scope = [a for e, a in pairs if e["expect"] == "not_answer"]
    return {
        "top1": right / max(len(answer_rows), 1),
        "wrong": wrong / len(pairs),
        "oos_answered": sum(a["action"] in ANSWERING for a in out_of_scope),
        "oos_answered_share": sum(a["action"] in ANSWERING for a in out_of_scope) / max(len(out_of_scope), 1),
        "misses": [
            (e["text"], e.get("topic"), a["action"], a["topic"]) for e, a in answer_rows if a["topic"] != e["topic"]
        ],
    }


@pytest.mark.skipif(not DEV_SET.exists(), reason="../shared/eval/dev.jsonl not present")
def test_dev_set_meets_the_quality_lines(triaged):
    pairs = triaged(load(DEV_SET))
    figures = score(pairs)
    assert figures["top1"] >= 0.95, figures
    assert figures["wrong"] <= 0.02, figures
    assert figures["oos_answered"] == 0, figures
    for expected, actual in pairs:
        kind = expected["expect"]
        if kind in ("handoff", "greeting"):
            assert actual["action"] == kind, (expected, actual)
        if kind == "invoice_lookup":
            assert actual["action"] == "invoice_lookup", (expected, actual)
            assert actual["invoice"] == expected.get("invoice", {}), (expected, actual)


def test_calibration_set_keeps_wrong_answers_rare(triaged):
    # The set holds 240 uncovered invoice questions, 110 of them near misses (a topic's words, another side of it):
    # the answer bar is fitted to give at most 5 % of those an FAQ answer, so more in-scope rows get a choice.
    figures = score(triaged(load(CALIBRATION_SET)))
    assert figures["top1"] >= 0.72, figures
    assert figures["wrong"] <= 0.02, figures
    assert figures["oos_answered_share"] <= 0.05, figures  # uncovered, off-topic, tax-adjacent and chatter rows
