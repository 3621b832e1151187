"""Inputs of the matcher benchmark: the scored queries and the knowledge bases padded with distractors."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# Project modules are imported inside the functions, so bench/match.py pins the CPUs before numpy loads.
if TYPE_CHECKING:
    from knowledge.matcher import Topic

REPO = Path(__file__).resolve().parent.parent
CALIBRATION = REPO / "bench" / "data" / "calibration.jsonl"
DEV_SET = REPO.parent / "shared" / "eval" / "dev.jsonl"
DIAC = REPO.parent / "shared" / "data" / "diac2019_train_set.xml"
EXPECTS = ("answer", "not_answer")


@dataclass(frozen=True)
class Query:
    """One benchmark message: what should happen to it, and where it comes from."""

    text: str
    expect: str
    topic: str | None
    source: str


@dataclass(frozen=True)
class KnowledgeBase:
    """The topics to index and a note on how they were made up."""

    topics: list[Topic]
    composition: str

    @property
    def phrasings(self) -> int:
        return sum(len(t.phrasings) for t in self.topics)


# --- queries ------------------------------------------------------------------------------------------------


def read_jsonl(path: Path, source: str) -> tuple[list[Query], int]:
    """Rows with a text and an answer/not_answer expectation; returns them and how many lines were skipped."""
    queries: list[Query] = []
    skipped = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        text, expect = row.get("text"), row.get("expect")
        if not isinstance(text, str) or not text.strip() or expect not in EXPECTS:
            skipped += 1
            continue
        queries.append(Query(text, expect, row.get("topic"), source))
    return queries, skipped


def phrasing_queries(topics: Sequence[Topic]) -> list[Query]:
    """Every question and alternate of the real topics, as in-domain queries."""
    return [Query(p, "answer", t.id, "phrasings") for t in topics for p in t.phrasings]


def load_queries(real: Sequence[Topic]) -> list[Query]:
    """The calibration set (or the topics' own phrasings) plus the shared dev set when present."""
    queries: list[Query] = []
    calibration: list[Query] = []
    if CALIBRATION.exists():
        calibration, skipped = read_jsonl(CALIBRATION, "calibration")
        print(f"queries: {CALIBRATION.relative_to(REPO)}: {len(calibration)} rows ({skipped} skipped)")
    if calibration:
        queries += calibration
    else:
        queries += phrasing_queries(real)
        print(
            f"queries: no calibration set at {CALIBRATION.relative_to(REPO)}; using the topics' own "
            f"{len(queries)} phrasings (they are indexed verbatim, so their quality figures are optimistic)"
        )
    if DEV_SET.exists():
        dev, skipped = read_jsonl(DEV_SET, "dev")
        queries += dev
        print(f"queries: {DEV_SET}: {len(dev)} rows ({skipped} skipped: other expectations or malformed)")
    known = {t.id for t in real}
    unknown = sorted({q.topic or "(none)" for q in queries if q.expect == "answer" and q.topic not in known})
    if unknown:
        print(f"queries: {len(unknown)} expected topic ids not in the KB (timed, not scored): {', '.join(unknown)}")
    return queries


# --- knowledge bases ----------------------------------------------------------------------------------------


def real_topics() -> list[Topic]:
    """The shipped FAQ entries and outside subjects as matcher topics."""
    from knowledge.service import shipped_topics

    return shipped_topics()


def diac_topics(path: Path) -> tuple[list[Topic], list[Topic]]:
    """One topic per DIAC equivalence group, and single-question topics from the not-equivalent questions."""
    from knowledge.matcher import Topic

    groups: list[Topic] = []
    singles: list[Topic] = []
    seen: set[str] = set()
    root = ET.parse(path).getroot()
    for block in root.iter("Questions"):
        number = block.get("number", str(len(groups)))
        same = [q.text.strip() for q in block.findall("EquivalenceQuestions/question") if q.text and q.text.strip()]
        if same:
            groups.append(Topic(f"diac_{number}", same[0], tuple(same[1:]), (), same[0]))
            seen.update(same)
    for block in root.iter("Questions"):
        number = block.get("number", "")
        others = block.findall("NotEquivalenceQuestions/question")
        for k, q in enumerate(others):
            text = (q.text or "").strip()
            if text and text not in seen:
                singles.append(Topic(f"diac_{number}_ne{k}", text, (), (), text))
                seen.add(text)
    return groups, singles


def synthetic_topics(real: Sequence[Topic], count: int, seed: int = 2019) -> list[Topic]:
    """Distractors made of characters drawn from the real phrasings (same alphabet, no meaning)."""
    from knowledge.matcher import Topic

    rng = random.Random(seed)
    chars = [c for t in real for p in t.phrasings for c in p if not c.isspace()]
    topics = []
    for i in range(count):
        phrasings = ["".join(rng.choices(chars, k=rng.randint(8, 20))) for _ in range(3)]
        topics.append(Topic(f"synth_{i}", phrasings[0], tuple(phrasings[1:]), (), phrasings[0]))
    return topics


def make_knowledge_base(real: list[Topic], size: int, pools: list[tuple[str, list[Topic]]]) -> KnowledgeBase:
    """The real topics padded to `size` FAQ topics (outside subjects not counted) from the distractor pools in
    order, then with synthetic strings."""
    topics = list(real)
    faq = sum(not t.outside for t in real)
    parts = [f"{faq} real", f"{len(real) - faq} outside"]
    for label, pool in pools:
        take = pool[: max(0, size - faq)]
        if take:
            topics += take
            faq += len(take)
            parts.append(f"{len(take)} {label}")
    missing = size - faq
    if missing > 0:
        topics += synthetic_topics(real, missing)
        parts.append(f"{missing} synthetic")
    return KnowledgeBase(topics, " + ".join(parts))


def distractor_pools() -> list[tuple[str, list[Topic]]]:
    """DIAC groups first, then DIAC not-equivalent questions; empty when the file is absent."""
    if not DIAC.exists():
        print(f"distractors: {DIAC} not found; padding with SYNTHETIC distractors (shuffled characters)")
        return []
    groups, singles = diac_topics(DIAC)
    print(
        f"distractors: {DIAC.name}: {len(groups)} equivalence groups (one topic each); beyond that, "
        f"{len(singles)} not-equivalent questions as one-phrasing topics"
    )
    return [("DIAC groups", groups), ("DIAC single questions", singles)]
