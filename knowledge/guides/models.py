"""Troubleshooting guides: small decision trees of questions whose options lead on, resolve or hand off."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

OptionKind = Literal["next", "resolve", "handoff", "guide"]
# The keys an option may carry to say where it leads, in the order they are checked.
TARGETS: tuple[OptionKind, ...] = ("next", "resolve", "handoff", "guide")


@dataclass(frozen=True)
class GuideOption:
    """One answer to a step's question and where it leads: another step, a fix, a human, or another guide."""

    label: str
    next: str | None = None
    resolve: str | None = None
    handoff: str | None = None
    guide: str | None = None
    # After a fix the merchant says did not help: go on at this step instead of handing off.
    unsolved: str | None = None

    @property
    def kind(self) -> OptionKind:
        """Where the option leads."""
        for kind in TARGETS:
            if getattr(self, kind) is not None:
                return kind
        raise ValueError(f"option {self.label!r} leads nowhere")

    @property
    def follow_up(self) -> str | None:
        """The step this option goes on to: its `next`, or after a fix that did not help, its `unsolved`."""
        return self.next if self.next is not None else self.unsolved

    @property
    def is_leaf(self) -> bool:
        """True when the option ends this guide (a fix, a handoff or a switch to another guide)."""
        return self.kind != "next"


ValueKind = Literal["taxpayer_id", "invoice_number", "date"]
VALUE_KINDS: tuple[ValueKind, ...] = ("taxpayer_id", "invoice_number", "date")


@dataclass(frozen=True)
class GuideValue:
    """A value a step also accepts pasted (a 税号, an invoice number, a date), checked before the guide goes on.

    A valid value goes to step `next`, or answers option `option` (1-based); a date of today answers option `today`.
    """

    kind: ValueKind
    next: str | None = None
    option: int | None = None
    today: int | None = None


@dataclass(frozen=True)
class GuideStep:
    """A question with its options; `info` is what to check first, shown before the question."""

    id: str
    text: str
    options: tuple[GuideOption, ...]
    info: str = ""
    value: GuideValue | None = None


@dataclass(frozen=True)
class Guide:
    """A troubleshooting guide attached to one FAQ topic (its id is the topic id)."""

    id: str
    title: str
    intro: str
    start: str
    steps: Mapping[str, GuideStep] = field(hash=False)
    # On-screen messages and codes the guide covers; pasted, they must reach this guide.
    errors: tuple[str, ...] = ()

    def step(self, step_id: str) -> GuideStep | None:
        """The step with this id, if the guide has it."""
        return self.steps.get(step_id)

    def leaf_paths(self) -> list[tuple[tuple[str, int], ...]]:
        """Every way from the start to every leaf as (step id, 0-based option index) pairs, no step twice.

        A fix met in the middle of a path stands for "the fix did not help" (its `unsolved` step comes next).
        """
        return list(self._walk(self.start, ()))

    def _walk(self, step_id: str, path: tuple[tuple[str, int], ...]) -> Iterator[tuple[tuple[str, int], ...]]:
        seen = {s for s, _ in path} | {step_id}
        for index, option in enumerate(self.steps[step_id].options):
            here = (*path, (step_id, index))
            if option.is_leaf:
                yield here
            onward = option.follow_up
            if onward is not None and onward not in seen:
                yield from self._walk(onward, here)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a guide file, named by file and step."""

    file: str
    message: str
    step: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: step {self.step!r}" if self.step else self.file
        return f"{where}: {self.message}"


class GuideError(ValueError):
    """Guides that failed validation; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid guides:\n" + "\n".join(f"  {p}" for p in problems))
