"""Triage of merchant messages as they really write them (default bench/data/styles.jsonl; --data picks another file,
e.g. the held-out bench/data/holdout.jsonl or holdout2.jsonl): full pinyin, mixed pinyin, shorthand, homophone typos,
long angry stories, small talk, handoff and greetings; in the held-out sets also real-style questions on the FAQ
topics, invoice questions the knowledge base does not cover, off-topic messages and questions on outside subjects.

Each message goes through the router exactly as `merchant-assist triage` sends it (a fresh conversation), once
with the pinyin step and once without it, and the figures are printed per style (styles not known here last):

    DATABASE_URL=sqlite:////tmp/styles.db .venv/bin/python bench/styles.py [--data bench/data/holdout.jsonl]

top1: answer items answered with the right topic; reach: right answer, or a clarify offering it among the first
three; wrong: answers (FAQ or guide) given with the wrong topic, or to an item that expects no answer; ok: items
that expect an action and got it (not_answer: no FAQ or guide answer; handoff, greeting: that action); oos: items
of style "outside" (a subject the bot does not cover) that got the out_of_scope action. It prints figures only; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# `python bench/styles.py` puts bench/, not the repo root, on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from knowledge.outside import OUT_OF_SCOPE

DATA = Path(__file__).resolve().parent / "data" / "styles.jsonl"
ANSWERING = {"answer", "guide"}
STYLES = (
    "pinyin",
    "mixed",
    "shorthand",
    "typo",
    "long_story",
    "smalltalk",
    "handoff",
    "greeting",
    "real",
    "uncovered",
    "offtopic",
    "outside",
)
OUTSIDE_STYLE = "outside"  # a subject the bot does not cover: expects the out_of_scope action
EXPECTS = ("answer", "not_answer", "handoff", "greeting")


def load(path: Path = DATA) -> list[dict]:
    """The labelled items."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def judge(item: dict, row: dict) -> dict[str, bool]:
    """Whether one triage row is a right answer, reaches the topic, is a wrong answer, is the expected action, and
    (outside items) was named out of scope."""
    action, topic = row["action"], row.get("topic")
    answered = action in ANSWERING
    oos = action == OUT_OF_SCOPE
    if item["expect"] == "answer":
        right = answered and topic == item["topic"]
        reach = right or (action == "clarify" and item["topic"] in (row.get("candidates") or [])[:3])
        return {"top1": right, "reach": reach, "wrong": answered and not right, "ok": right, "oos": oos}
    if item["expect"] == "not_answer":
        return {"top1": False, "reach": False, "wrong": answered, "ok": not answered, "oos": oos}
    return {"top1": False, "reach": False, "wrong": answered, "ok": action == item["expect"], "oos": oos}


def triage_all(items: Sequence[dict]) -> tuple[list[dict], list[float]]:
    """Triage rows and per-message latency (ms), after one untimed warm-up pass."""
    from bot.bootstrap import prepare_database
    from bot.triage import make_triage_router, triage_one

    prepare_database()
    router = make_triage_router()
    for number, item in enumerate(items):
        triage_one(router, item["text"], number)
    rows, latencies = [], []
    for number, item in enumerate(items):
        start = time.perf_counter()
        rows.append(triage_one(router, item["text"], number))
        latencies.append((time.perf_counter() - start) * 1000)
    return rows, latencies


def table(items: Sequence[dict], rows: Sequence[dict], title: str) -> None:
    """Per-style and overall figures."""
    print(f"\n== {title}")
    print(f"  {'style':<11} {'n':>4} {'top1':>6} {'reach':>6} {'wrong':>6} {'ok':>6} {'oos':>6}")
    others_seen = sorted({i["style"] for i in items} - set(STYLES))
    for style in (*STYLES, *others_seen, "all"):
        pairs = [(i, r) for i, r in zip(items, rows, strict=True) if style in ("all", i["style"])]
        if not pairs:
            continue
        marks = [judge(i, r) for i, r in pairs]
        answers = [m for (i, _), m in zip(pairs, marks, strict=True) if i["expect"] == "answer"]
        others = [m for (i, _), m in zip(pairs, marks, strict=True) if i["expect"] != "answer"]
        outside = [m for (i, _), m in zip(pairs, marks, strict=True) if i["style"] == OUTSIDE_STYLE]

        def rate(values: list[dict], key: str) -> str:
            return f"{sum(v[key] for v in values) / len(values):6.3f}" if values else "     -"

        print(
            f"  {style:<11} {len(pairs):>4} {rate(answers, 'top1')} {rate(answers, 'reach')} "
            f"{rate(marks, 'wrong')} {rate(others, 'ok')} {rate(outside, 'oos')}"
        )


def misses(items: Sequence[dict], rows: Sequence[dict]) -> None:
    """The items not reached (answer) or not handled as expected (others), and outside items not named out of scope."""
    for item, row in zip(items, rows, strict=True):
        mark = judge(item, row)
        missed = not (mark["reach"] if item["expect"] == "answer" else mark["ok"]) or mark["wrong"]
        if missed or (item["style"] == OUTSIDE_STYLE and not mark["oos"]):
            want = item.get("topic") or item["expect"]
            got = f"{row['action']} {row.get('topic')}"
            print(f"  miss [{item['style']}] {item['text'][:40]!r}: want {want}, got {got}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the labelled items (JSON lines); default %(default)s")
    parser.add_argument("--misses", action="store_true", help="list the items handled wrongly (with pinyin)")
    args = parser.parse_args(argv)

    from knowledge.pinyin import PinyinIndex

    items = load(args.data)
    with_rows, with_ms = triage_all(items)
    convert = PinyinIndex.convert
    PinyinIndex.convert = lambda self, text: text  # type: ignore[method-assign]
    try:
        without_rows, without_ms = triage_all(items)
    finally:
        PinyinIndex.convert = convert  # type: ignore[method-assign]

    table(items, without_rows, "without the pinyin step")
    table(items, with_rows, "with the pinyin step")
    if args.misses:
        misses(items, with_rows)
    added = [a - b for a, b in zip(with_ms, without_ms, strict=True)]
    print(
        f"\ntriage ms per message: median {statistics.median(with_ms):.2f} with, "
        f"{statistics.median(without_ms):.2f} without; median added {statistics.median(added):.2f}"
    )
    latin = [i["text"] for i in items if any("a" <= c.lower() <= "z" for c in i["text"])]
    from bench.match_sets import real_topics
    from knowledge.matcher import Matcher, load_lexicon

    matcher = Matcher(real_topics(), lexicon=load_lexicon())
    steps = []
    for text in latin:
        start = time.perf_counter()
        matcher.pinyin.convert(text)
        steps.append((time.perf_counter() - start) * 1000)
    median = statistics.median(steps)
    print(f"pinyin step alone on the {len(latin)} messages with latin letters: median {median:.3f} ms")


if __name__ == "__main__":
    main()
