"""Subjects outside the assistant's remit (other taxes, social insurance, business licences, bookkeeping): what each
is called, where merchants should ask instead and what that rests on, and the phrasings the matcher ranks beside the
FAQ topics."""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from knowledge.matcher import DATA_DIR, Topic

OUTSIDE_PATH = DATA_DIR / "out_of_scope.yaml"
OUT_OF_SCOPE = "out_of_scope"  # the intent of a turn about an outside subject: listed among unanswered questions


@dataclass(frozen=True)
class Subject:
    """A subject the bot does not cover."""

    id: str
    name: str
    where: str
    phrasings: tuple[str, ...]
    source: str  # the rule or official channel the "where to ask" rests on

    @property
    def topic(self) -> Topic:
        """The subject as a matcher topic (an outside one)."""
        return Topic(self.id, self.phrasings[0], self.phrasings[1:], answer=self.name, outside=True)


@lru_cache
def load_subjects(path: Path = OUTSIDE_PATH) -> dict[str, Subject]:
    """The shipped outside subjects by id."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    return {d["id"]: Subject(d["id"], d["name"], d["where"], tuple(d["phrasings"]), d["source"]) for d in data}


def outside_topics() -> list[Topic]:
    """The shipped outside subjects as matcher topics."""
    return [s.topic for s in load_subjects().values()]
