"""The reference points of the brain issue, measured on the same messages as the matcher.

- rapidfuzz: best `fuzz.ratio` of the message against each topic's question and alternates; answer at >= 50.
- e5 alone: the bundled multilingual-e5-small, best cosine against the phrasings; top-1 (it always answers).
- merchant-assist: the shipped matcher (answer / clarify / not sure).

usage: .venv/bin/python -m bench.baselines   (prints figures; asserts nothing)
"""

import json
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz

from knowledge import service
from knowledge.embedding import load_embedder
from knowledge.matcher import Matcher, Topic, load_lexicon

REPO = Path(__file__).resolve().parent.parent
SETS = {
    "calibration": REPO / "bench" / "data" / "calibration.jsonl",
    "dev": REPO.parent / "shared" / "eval" / "dev.jsonl",
}


def load(path: Path) -> list[dict]:
    """Rows that expect an answer or no answer."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r.get("expect") in ("answer", "not_answer")]


def figures(rows: list[dict], decisions: list[tuple[str | None, bool]]) -> str:
    """Share of in-scope rows answered right, share of all rows answered wrong, off-topic rows answered."""
    in_scope = [(r, d) for r, d in zip(rows, decisions, strict=True) if r["expect"] == "answer"]
    right = sum(answered and topic == r["topic"] for r, (topic, answered) in in_scope)
    top1 = sum(topic == r["topic"] for r, (topic, _) in in_scope)
    wrong = sum(
        answered and (r["expect"] != "answer" or topic != r["topic"])
        for r, (topic, answered) in zip(rows, decisions, strict=True)
    )
    oos = sum(answered for r, (_, answered) in zip(rows, decisions, strict=True) if r["expect"] == "not_answer")
    n_oos = sum(r["expect"] == "not_answer" for r in rows)
    return (
        f"top1 {top1 / len(in_scope):6.1%}  answered right {right / len(in_scope):6.1%}  "
        f"answered wrong {wrong / len(rows):5.1%}  off-topic answered {oos}/{n_oos}"
    )


def main() -> None:
    topics = [
        Topic(e.id, e.question, tuple(e.alternates), tuple(e.keywords), e.answer) for e in service.default_entries()
    ]
    embedder = load_embedder(REPO / "var" / "embeddings.npz")
    matcher = Matcher(topics, lexicon=load_lexicon(), embedder=embedder)
    phrasings = [(i, p) for i, t in enumerate(topics) for p in t.phrasings]
    starts = np.flatnonzero(np.r_[True, np.diff([i for i, _ in phrasings]) != 0])
    vectors = embedder.queries([p for _, p in phrasings]) if embedder else None
    for name, path in SETS.items():
        if not path.exists():
            continue
        rows = load(path)
        print(f"== {name}: {len(rows)} messages")
        fuzzy = []
        for r in rows:
            best = np.zeros(len(topics))
            for i, p in phrasings:
                best[i] = max(best[i], fuzz.ratio(r["text"], p))
            fuzzy.append((topics[int(best.argmax())].id, best.max() >= 50))
        print("  rapidfuzz ratio>=50  " + figures(rows, fuzzy))
        if vectors is not None:
            e5 = [
                (topics[int(np.maximum.reduceat(vectors @ embedder.query(r["text"]), starts).argmax())].id, True)
                for r in rows
            ]
            print("  e5 alone             " + figures(rows, e5))
        ours = [
            (m.candidates[0].topic if m.candidates else None, m.outcome == "answer")
            for m in (matcher.match(r["text"]) for r in rows)
        ]
        print("  merchant-assist      " + figures(rows, ours))


if __name__ == "__main__":
    main()
