"""Load the guide YAML files and validate them: every problem is reported with its file and step."""

import logging
import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from core import safe_yaml
from core.text import fold
from knowledge.guides.models import (
    TARGETS,
    VALUE_KINDS,
    Guide,
    GuideError,
    GuideOption,
    GuideStep,
    GuideValue,
    Problem,
)

log = logging.getLogger(__name__)

GUIDE_DIR = Path(__file__).resolve().parent
# Ids stay short so that option payloads ("guide:<step>:<n>", "guide:start:<guide>") fit Telegram's callback data.
GUIDE_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
RESERVED_STEPS = frozenset({"done", "resume", "start"})
MAX_LABEL_CHARS = 20
MAX_OPTIONS = 9  # a merchant picks by one digit
MAX_PAYLOAD_BYTES = 64  # Telegram callback_data limit
# A step may also accept a pasted value: value: {kind: taxpayer_id|invoice_number|date, next: <step> | option: <n>,
# today: <n> (dates only: the option a date of today answers)}.
GUIDE_KEYS = frozenset({"id", "title", "intro", "start", "steps", "errors"})
STEP_KEYS = frozenset({"text", "info", "options", "value"})
VALUE_KEYS = frozenset({"kind", "next", "option", "today"})
OPTION_KEYS = frozenset({"label", "unsolved", *TARGETS})


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


class _Checker:
    """Collects the problems of one guide file while building it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, message: str, step: str | None = None) -> None:
        self.problems.append(Problem(self.file, message, step))

    def guide(self, data: Any) -> Guide | None:
        if not isinstance(data, Mapping):
            self.add("the file must hold a mapping with id, title, intro, start and steps")
            return None
        for key in sorted(set(data) - GUIDE_KEYS, key=str):
            self.add(f"unknown key {key!r}")
        guide_id = data.get("id")
        if not isinstance(guide_id, str) or not GUIDE_ID.match(guide_id):
            self.add("id must be a FAQ topic id (lower-case letters, digits, _; at most 40 characters)")
        for key in ("title", "intro"):
            if not _text(data.get(key)):
                self.add(f"{key} is missing or empty")
        errors = data.get("errors", [])
        if not isinstance(errors, list) or not all(_text(e) for e in errors):
            self.add("errors must be a list of non-empty texts")
            errors = []
        raw_steps = data.get("steps")
        if not isinstance(raw_steps, Mapping) or not raw_steps:
            self.add("steps is missing or empty")
            return None
        steps = {}
        for step_id, raw in raw_steps.items():
            step = self.step(str(step_id), raw)
            if step is not None:
                steps[step.id] = step
        start = data.get("start")
        if not isinstance(start, str) or start not in raw_steps:
            self.add(f"start {start!r} is not a step")
        elif len(steps) == len(raw_steps):
            self.links(str(guide_id), steps)
            self.graph(str(start), steps)
        if self.problems:
            return None
        return Guide(
            id=guide_id,
            title=data["title"].strip(),
            intro=data["intro"].strip(),
            start=start,
            steps=steps,
            errors=tuple(e.strip() for e in errors),
        )

    def step(self, step_id: str, raw: Any) -> GuideStep | None:
        ok = True
        if not STEP_ID.match(step_id) or step_id in RESERVED_STEPS:
            self.add("step id must be lower-case letters, digits, _ (at most 24), not done/resume/start", step_id)
            ok = False
        if not isinstance(raw, Mapping):
            self.add("a step must be a mapping with text and options", step_id)
            return None
        for key in sorted(set(raw) - STEP_KEYS, key=str):
            self.add(f"unknown key {key!r}", step_id)
            ok = False
        if not _text(raw.get("text")):
            self.add("text (the question) is missing or empty", step_id)
            ok = False
        info = raw.get("info", "")
        if info and not _text(info):
            self.add("info must be a text", step_id)
            ok = False
        raw_options = raw.get("options")
        if not isinstance(raw_options, list) or not raw_options:
            self.add("step has no options", step_id)
            return None
        if len(raw_options) > MAX_OPTIONS:
            self.add(f"{len(raw_options)} options; at most {MAX_OPTIONS} (picked by one digit)", step_id)
            ok = False
        options = [self.option(step_id, n, o) for n, o in enumerate(raw_options, 1)]
        labels = [fold(o.label) for o in options if o is not None]
        for label in sorted({label for label in labels if labels.count(label) > 1}):
            self.add(f"duplicate option label {label!r}", step_id)
            ok = False
        payload = f"guide:{step_id}:{len(raw_options)}"
        if len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
            self.add(f"option payload {payload!r} longer than {MAX_PAYLOAD_BYTES} bytes", step_id)
            ok = False
        value = self.value(step_id, raw.get("value"), len(raw_options)) if "value" in raw else None
        if not ok or any(o is None for o in options) or ("value" in raw and value is None):
            return None
        text, info = raw["text"].strip(), (info or "").strip()
        return GuideStep(step_id, text, tuple(options), info, value)  # type: ignore[arg-type]

    def value(self, step_id: str, raw: Any, count: int) -> GuideValue | None:
        """A step's `value`: the kind it accepts and where a valid one goes (a step, or one of the options)."""
        if not isinstance(raw, Mapping) or raw.get("kind") not in VALUE_KINDS:
            self.add(f"value must be a mapping with kind one of {', '.join(VALUE_KINDS)}", step_id)
            return None
        ok = True
        for key in sorted(set(raw) - VALUE_KEYS, key=str):
            self.add(f"value: unknown key {key!r}", step_id)
            ok = False
        if ("next" in raw) == ("option" in raw):
            self.add("value needs exactly one of next (a step) or option (a number)", step_id)
            ok = False
        for key in ("option", "today"):
            number = raw.get(key)
            if number is not None and (not isinstance(number, int) or not 1 <= number <= count):
                self.add(f"value: {key} must be an option number from 1 to {count}", step_id)
                ok = False
        if raw.get("today") is not None and raw["kind"] != "date":
            self.add("value: today belongs only to kind date", step_id)
            ok = False
        if "next" in raw and not _text(raw["next"]):
            self.add("value: next must be a step id", step_id)
            ok = False
        if not ok:
            return None
        next_step = raw["next"].strip() if "next" in raw else None
        return GuideValue(raw["kind"], next_step, raw.get("option"), raw.get("today"))

    def option(self, step_id: str, number: int, raw: Any) -> GuideOption | None:
        where = f"option {number}"
        if not isinstance(raw, Mapping):
            self.add(f"{where} must be a mapping with a label and one of {', '.join(TARGETS)}", step_id)
            return None
        ok = True
        for key in sorted(set(raw) - OPTION_KEYS, key=str):
            self.add(f"{where}: unknown key {key!r}", step_id)
            ok = False
        label = raw.get("label")
        if not _text(label):
            self.add(f"{where}: label is missing or empty", step_id)
            return None
        label = " ".join(label.split())
        where = f"option {number} ({label})"
        if len(label) > MAX_LABEL_CHARS:
            self.add(f"{where}: label has {len(label)} characters; at most {MAX_LABEL_CHARS} (buttons)", step_id)
            ok = False
        targets = [k for k in TARGETS if k in raw]
        if len(targets) != 1:
            self.add(f"{where}: needs exactly one of {', '.join(TARGETS)}, has {len(targets)}", step_id)
            return None
        target = raw[targets[0]]
        if not _text(target):
            self.add(f"{where}: {targets[0]} must be a non-empty text", step_id)
            ok = False
        unsolved = raw.get("unsolved")
        if unsolved is not None and (targets[0] != "resolve" or not _text(unsolved)):
            self.add(f"{where}: unsolved (a step id) belongs only to a resolve option", step_id)
            ok = False
        if not ok:
            return None
        return GuideOption(label=label, unsolved=unsolved, **{targets[0]: target.strip()})

    def links(self, guide_id: str, steps: dict[str, GuideStep]) -> None:
        for step in steps.values():
            if step.value is not None and step.value.next is not None and step.value.next not in steps:
                self.add(f"value: next {step.value.next!r} is not a step (dangling)", step.id)
            for number, option in enumerate(step.options, 1):
                where = f"option {number} ({option.label})"
                for key in ("next", "unsolved"):
                    target = getattr(option, key)
                    if target is not None and target not in steps:
                        self.add(f"{where}: {key} {target!r} is not a step (dangling)", step.id)
                if option.guide is not None and (option.guide == guide_id or not GUIDE_ID.match(option.guide)):
                    self.add(f"{where}: guide {option.guide!r} must be another guide's id", step.id)

    def graph(self, start: str, steps: dict[str, GuideStep]) -> None:
        if self.problems:
            return
        reached, todo = {start}, [start]
        while todo:
            step = steps[todo.pop()]
            onward_steps = [o.follow_up for o in step.options] + [step.value.next if step.value else None]
            for onward in onward_steps:
                if onward is not None and onward not in reached:
                    reached.add(onward)
                    todo.append(onward)
        for step_id in steps:
            if step_id not in reached:
                self.add(f"unreachable from start {start!r}", step_id)
        exits = {s.id for s in steps.values() if any(o.is_leaf for o in s.options)}
        grown = True
        while grown:
            before = len(exits)
            exits |= {s.id for s in steps.values() if any(o.next in exits for o in s.options)}
            grown = len(exits) > before
        for step_id in steps:
            if step_id not in exits:
                self.add("cycle with no exit: no fix, handoff or other guide can be reached from here", step_id)


def parse_guide(
    text: str, *, file: str = "<guide>", known: Collection[str] | None = None
) -> tuple[Guide | None, list[Problem]]:
    """Parse and validate one guide's YAML (with `known` guide ids, check switches too); None when it has problems."""
    checker = _Checker(file)
    try:
        data = safe_yaml.safe_load(text)
    except yaml.YAMLError as exc:
        checker.add(f"not valid YAML: {exc}")
        return None, checker.problems
    guide = checker.guide(data)
    if guide is not None and known is not None:
        for step in guide.steps.values():
            for option in step.options:
                if option.guide is not None and option.guide not in known:
                    checker.add(f"option ({option.label}): guide {option.guide!r} does not exist", step.id)
    return (guide if not checker.problems else None), checker.problems


def check_guides(directory: Path = GUIDE_DIR) -> dict[str, list[Problem]]:
    """Every guide file's problems by guide id (the file name without .yaml); an empty list means valid."""
    return _load(directory)[1]


def load_guides(directory: Path = GUIDE_DIR) -> dict[str, Guide]:
    """Every guide by id; raise GuideError listing all problems when any file is invalid."""
    guides, problems = _load(directory)
    found = [p for listed in problems.values() for p in listed]
    if found:
        raise GuideError(found)
    return guides


@lru_cache
def get_guides() -> dict[str, Guide]:
    """The shipped guides for the running bot; an invalid guide is logged and left out, never fatal."""
    guides, problems = _load(GUIDE_DIR)
    for listed in problems.values():
        for problem in listed:
            log.error("guide left out: %s", problem)
    return guides


def _load(directory: Path) -> tuple[dict[str, Guide], dict[str, list[Problem]]]:
    """The valid guides and every file's problems."""
    parsed: dict[str, Guide | None] = {}
    problems: dict[str, list[Problem]] = {}
    for path in sorted(directory.glob("*.yaml")):
        name = path.stem
        try:
            guide, found = parse_guide(path.read_text(encoding="utf-8"), file=path.name)
        except (OSError, UnicodeDecodeError) as exc:
            guide, found = None, [Problem(path.name, f"cannot read: {exc}")]
        if guide is not None and guide.id != name:
            found.append(Problem(path.name, f"id {guide.id!r} must match the file name ({name})"))
            guide = None
        parsed[name], problems[name] = guide, found
    _check_switches(parsed, problems)
    return {name: guide for name, guide in parsed.items() if guide is not None}, problems


def _check_switches(parsed: dict[str, Guide | None], problems: dict[str, list[Problem]]) -> None:
    """An option may switch only to a guide that exists and is valid; repeat until no guide drops out."""
    changed = True
    while changed:
        changed = False
        for name, guide in parsed.items():
            if guide is None:
                continue
            for step in guide.steps.values():
                for option in step.options:
                    if option.guide is None or parsed.get(option.guide) is not None:
                        continue
                    reason = "does not exist" if option.guide not in parsed else "is invalid"
                    problems[name].append(
                        Problem(f"{name}.yaml", f"option ({option.label}): guide {option.guide!r} {reason}", step.id)
                    )
                    parsed[name] = None
                    changed = True
