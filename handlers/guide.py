"""Troubleshooting guides in chat: ask a step, follow the chosen option, go back, restart, pause, resume, hand off."""

import re
from collections.abc import Mapping

from rapidfuzz import fuzz, process

from core.conversation.state import GuideProgress
from core.messages import Option, Reply
from core.text import fold, units
from handlers import faq, handoff
from handlers.turn import Turn
from knowledge.guides import Guide, GuideOption, GuideStep

Guides = Mapping[str, Guide]

RESUME = Option("继续刚才的排查", "guide:resume")
SOLVED = Option("解决了", "guide:done:yes")
UNSOLVED = Option("还没解决", "guide:done:no")
FEEDBACK_QUESTION = "问题解决了吗？"
DONE_STEP = "done"  # path entries with this step record the answer to FEEDBACK_QUESTION
HINT = "（可回复：返回 / 重来 / 退出 / 转人工）"
STALE = "这个选项已经过期了，请按当前的问题选择："
MAX_PATH = 40
MAX_SUMMARY_CHARS = 120
MAX_IDLE = 3  # replies to other questions before a paused guide is dropped
# How close typed words must be to an option's label (rapidfuzz ratio, 0-100) to pick it.
CHOICE_SIMILARITY = 80

_COMMANDS = {
    "back": {"返回", "返回上一步", "上一步", "回到上一步", "退回", "后退", "back"},
    "restart": {"重来", "重新来", "重新开始", "从头开始", "从头来", "重新排查", "再来一次", "restart"},
    "exit": {"退出", "结束", "退出排查", "结束排查", "不用了", "算了", "取消", "quit", "exit"},
    "resume": {"继续", "继续排查", "继续刚才的排查", "接着排查", "回到排查", "resume"},
}
_YES = {"是", "是的", "是啊", "对", "对的", "对啊", "嗯", "嗯嗯", "有", "有的", "有啊", "能", "可以", "可以了"}
_YES |= {"好了", "行了", "解决了", "已经解决了", "搞定了", "已经", "亮", "亮了", "ok", "yes"}
_NO = {"否", "不", "不是", "不是啊", "不对", "没", "没有", "没有啊", "不能", "不行", "不可以", "还不行", "还是不行"}
_NO |= {"没解决", "还没解决", "还没", "还没有", "没用", "no"}
_YES_LABEL = ("是", "有", "能", "已", "对", "亮", "可以", "解决")
_NO_LABEL = ("不", "没", "否", "未", "还没", "还是")
_NUMBER = re.compile(r"^[0-9]+$")


def option_payload(step_id: str, number: int) -> str:
    """The payload of a step's option (1-based number); short enough for Telegram's 64-byte callback data."""
    return f"guide:{step_id}:{number}"


def _squeeze(text: str) -> str:
    """Folded text without punctuation or spaces."""
    return "".join(units(fold(text)))


def command(text: str) -> str | None:
    """ "back", "restart", "exit" or "resume" when the message is one of those commands."""
    squeezed = _squeeze(text)
    return next((name for name, words in _COMMANDS.items() if squeezed in words), None)


def current(turn: Turn, guides: Guides) -> tuple[Guide, GuideProgress] | None:
    """The guide in progress and where; progress that no longer fits the shipped guides is dropped."""
    progress = turn.session.guide
    if progress is None:
        return None
    guide = guides.get(progress.guide)
    if guide is None or guide.step(progress.step) is None:
        turn.session.guide = None
        return None
    if progress.feedback and _chosen(guide, progress) is None:
        progress.feedback = False
    return guide, progress


def is_active(turn: Turn, guides: Guides) -> bool:
    """True when the last reply asked a guide's question (a number or words answer it)."""
    found = current(turn, guides)
    return found is not None and not found[1].paused


def is_paused(turn: Turn, guides: Guides) -> bool:
    """True when a guide waits to be resumed."""
    found = current(turn, guides)
    return found is not None and found[1].paused


def start(
    turn: Turn,
    guide: Guide,
    *,
    confidence: float | None = None,
    candidates: list[str] | None = None,
    path: list[list[str]] | None = None,
    lead: str | None = None,
) -> Reply:
    """Begin a guide at its first step: the summary of the topic (or `lead`), then the first question."""
    turn.session.guide = GuideProgress(guide.id, guide.start, path=list(path or []))
    turn.session.last_topic = guide.id
    turn.session.unsure_streak = 0
    return _ask(
        guide,
        turn.session.guide,
        lead=summary(turn, guide) if lead is None else lead,
        confidence=confidence,
        candidates=candidates,
    )


def summary(turn: Turn, guide: Guide) -> str:
    """The live FAQ answer's first line (so that FAQ edits show), or the guide's intro when that is missing or long."""
    entry = turn.knowledge.entries.get(guide.id)
    first = next((line.strip() for line in entry.answer.splitlines() if line.strip()), "") if entry else ""
    return first if 0 < len(first) <= MAX_SUMMARY_CHARS else guide.intro


def show(turn: Turn, guides: Guides, lead: str = "") -> Reply | None:
    """Ask the current question again (and un-pause the guide); None without a guide."""
    found = current(turn, guides)
    return None if found is None else _again(*found, lead=lead)


def resume(turn: Turn, guides: Guides) -> Reply:
    """Go back to the paused guide where the merchant left it."""
    found = current(turn, guides)
    if found is None:
        return Reply(text="刚才的排查已经结束或超时了。请重新描述您遇到的问题，我再帮您一步步排查。", intent="fallback")
    return _again(*found, lead=f"好的，我们继续刚才的排查：{found[0].title}。")


def choose(turn: Turn, guides: Guides, step_id: str, number: int) -> Reply:
    """Follow option `number` (1-based) of step `step_id`: the next question, a fix, a handoff or another guide."""
    found = current(turn, guides)
    if found is None:
        return resume(turn, guides)
    guide, progress = found
    step = guide.steps[progress.step]
    if progress.feedback or step.id != step_id or not 1 <= number <= len(step.options):
        return _again(guide, progress, lead=STALE)
    option = step.options[number - 1]
    _record(progress, [guide.id, step.id, option.label])
    progress.paused, progress.idle = False, 0
    if option.next is not None:
        progress.step = option.next
        return _ask(guide, progress)
    if option.resolve is not None:
        progress.feedback = True
        return _ask(guide, progress)
    if option.handoff is not None:
        return hand_off(turn, guides, note=option.handoff)
    target = guides.get(option.guide or "")
    if target is None:
        return hand_off(turn, guides, note=f"商户选择了“{option.label}”，需要人工继续排查。")
    lead = f"好的，我们按“{target.title}”继续排查。\n{summary(turn, target)}"
    return start(turn, target, path=progress.path, lead=lead)


def feedback(turn: Turn, guides: Guides, solved: bool) -> Reply:
    """After a fix: close the guide when it helped; otherwise go on where the guide says, or hand off."""
    found = current(turn, guides)
    if found is None:
        return resume(turn, guides)
    guide, progress = found
    if not progress.feedback:
        return _again(guide, progress, lead=STALE)
    option = _chosen(guide, progress)
    if solved:
        turn.session.guide = None
        return Reply(text="太好了，问题解决了！还有其他问题可以直接问我。", intent="guide", topic=guide.id)
    _record(progress, [guide.id, DONE_STEP, UNSOLVED.label])
    progress.feedback = False
    if option is not None and option.unsolved is not None:
        progress.step = option.unsolved
        return _ask(guide, progress, lead="好的，我们继续排查。")
    return hand_off(turn, guides, note="已按建议处理，问题仍未解决。")


def back(turn: Turn, guides: Guides) -> Reply | None:
    """Go one question back (across a switch of guide too); None without a guide."""
    found = current(turn, guides)
    if found is None:
        return None
    progress = found[1]
    if progress.feedback:
        progress.feedback = False
        progress.path.pop()
        return show(turn, guides, lead="好的，回到上一步。")
    if not progress.path:
        return show(turn, guides, lead="已经是第一步了。")
    guide_id, step_id, _ = progress.path.pop()
    progress.guide = guide_id
    if step_id == DONE_STEP and progress.path:
        progress.step, progress.feedback = progress.path[-1][1], True
    else:
        progress.step = step_id
    return show(turn, guides, lead="好的，回到上一步。")


def restart(turn: Turn, guides: Guides) -> Reply | None:
    """Start over from the first question of the guide the merchant began with; None without a guide."""
    found = current(turn, guides)
    if found is None:
        return None
    guide, progress = found
    first = guides.get(progress.path[0][0]) if progress.path else guide
    first = first or guide
    return start(turn, first, lead=f"好的，我们从头开始排查：{first.title}。")


def leave(turn: Turn, guides: Guides) -> Reply | None:
    """End the guide at the merchant's request; None without a guide."""
    found = current(turn, guides)
    if found is None:
        return None
    turn.session.guide = None
    return Reply(
        text=f"好的，已结束“{found[0].title}”的排查。还有其他问题可以直接问我，需要人工帮助请回复“转人工”。",
        intent="guide",
        topic=found[0].id,
    )


def hand_off(turn: Turn, guides: Guides, note: str | None = None) -> Reply:
    """Hand off to a human with what the guide learned (a plain handoff without a guide)."""
    learned = learned_so_far(turn, guides, note)
    turn.session.guide = None
    return handoff.handle(turn, learned)


def learned_so_far(turn: Turn, guides: Guides, note: str | None = None) -> handoff.Learned | None:
    """What the guide in progress found out: the questions answered, the fixes suggested, the conclusion."""
    found = current(turn, guides)
    if found is None:
        return None
    guide, progress = found
    checked, suggested = [], []
    for guide_id, step_id, label in progress.path:
        if step_id == DONE_STEP:
            checked.append((FEEDBACK_QUESTION, label))
            continue
        step = guides[guide_id].step(step_id) if guide_id in guides else None
        if step is None:
            continue
        checked.append((step.text, label))
        option = _option(step, label)
        if option is not None and option.resolve is not None:
            suggested.append(option.resolve)
    if note is None:
        if progress.feedback:
            note = "已给出处理建议，商户未确认是否解决，要求转人工。"
        else:
            note = f"排查到“{guide.steps[progress.step].text}”时，商户要求转人工。"
    path = tuple((guide_id, step_id, label) for guide_id, step_id, label in progress.path)
    return handoff.Learned(guide.id, guide.title, note, tuple(checked), tuple(suggested), path)


def pick(turn: Turn, guides: Guides, text: str) -> str | None:
    """The payload of the current question's option a message picks by number or by its words."""
    options = current_options(turn, guides)
    if not options:
        return None
    number = faq.parse_choice(text, len(options))
    if number is not None:
        return options[number].payload
    index = _by_words(text, [o.label for o in options])
    return options[index].payload if index is not None else None


def pick_polar(turn: Turn, guides: Guides, text: str) -> str | None:
    """The payload of the one yes-like or no-like option a short "是的" / "没有" answers, if there is one."""
    squeezed = _squeeze(text)
    prefixes = _YES_LABEL if squeezed in _YES else _NO_LABEL if squeezed in _NO else None
    if prefixes is None:
        return None
    options = current_options(turn, guides)
    fitting = [o for o in options if _polar(o.label) == prefixes]
    return fitting[0].payload if len(fitting) == 1 else None


def looks_like_answer(text: str) -> bool:
    """True for a bare number or yes/no that fits no option: the question is asked again, not routed elsewhere."""
    squeezed = _squeeze(text)
    return bool(_NUMBER.match(squeezed)) or squeezed in _YES or squeezed in _NO


def current_options(turn: Turn, guides: Guides) -> list[Option]:
    """The options the guide's current question offers."""
    found = current(turn, guides)
    if found is None:
        return []
    guide, progress = found
    if progress.feedback:
        return [SOLVED, UNSOLVED]
    step = guide.steps[progress.step]
    return [Option(o.label, option_payload(step.id, n)) for n, o in enumerate(step.options, 1)]


def offer_resume(turn: Turn, guides: Guides, reply: Reply) -> Reply:
    """After a reply that left the guide: pause it and offer to resume (dropped after a few such replies)."""
    found = current(turn, guides)
    if found is None:
        return reply
    progress = found[1]
    if reply.intent == "guide" and not progress.paused:
        return reply
    progress.idle = progress.idle + 1 if progress.paused else 1
    progress.paused = True
    if progress.idle > MAX_IDLE:
        turn.session.guide = None
        return reply
    if all(o.payload != RESUME.payload for o in reply.options):
        reply.options = [*reply.options, RESUME]
    return reply


def start_option(guide: Guide) -> Option:
    """An option that starts a guide (offered when another guide is paused)."""
    return Option("按步骤排查这个问题", f"guide:start:{guide.id}")


def _ask(
    guide: Guide,
    progress: GuideProgress,
    *,
    lead: str = "",
    confidence: float | None = None,
    candidates: list[str] | None = None,
) -> Reply:
    step = guide.steps[progress.step]
    if progress.feedback:
        option = _chosen(guide, progress)
        parts = [lead, option.resolve if option else "", FEEDBACK_QUESTION]
        options = [SOLVED, UNSOLVED]
    else:
        parts = [lead, step.info, f"{step.text}\n{HINT}"]
        options = [Option(o.label, option_payload(step.id, n)) for n, o in enumerate(step.options, 1)]
    return Reply(
        text="\n\n".join(p for p in parts if p),
        intent="guide",
        options=options,
        topic=guide.id,
        confidence=confidence,
        candidates=candidates or [guide.id],
    )


def _again(guide: Guide, progress: GuideProgress, *, lead: str = "") -> Reply:
    """Ask the current question (again), taking the guide out of pause."""
    progress.paused, progress.idle = False, 0
    return _ask(guide, progress, lead=lead)


def _record(progress: GuideProgress, entry: list[str]) -> None:
    progress.path.append(entry)
    del progress.path[:-MAX_PATH]


def _chosen(guide: Guide, progress: GuideProgress) -> GuideOption | None:
    """The fix the merchant was just shown (the last answer, given at the current step)."""
    if not progress.path:
        return None
    guide_id, step_id, label = progress.path[-1]
    if guide_id != guide.id or step_id != progress.step:
        return None
    option = _option(guide.steps[step_id], label)
    return option if option is not None and option.resolve is not None else None


def _option(step: GuideStep, label: str) -> GuideOption | None:
    return next((o for o in step.options if o.label == label), None)


def _polar(label: str) -> tuple[str, ...] | None:
    squeezed = _squeeze(label)
    if squeezed.startswith(_NO_LABEL):
        return _NO_LABEL
    if squeezed.startswith(_YES_LABEL):
        return _YES_LABEL
    return None


def _by_words(text: str, labels: list[str]) -> int | None:
    """The label typed (exactly, nearly, or contained in a short message); None when unclear."""
    typed = _squeeze(text)
    if not typed:
        return None
    squeezed = [_squeeze(label) for label in labels]
    if typed in squeezed:
        return squeezed.index(typed)
    best = process.extractOne(typed, squeezed, scorer=fuzz.ratio, score_cutoff=CHOICE_SIMILARITY)
    if best is not None:
        return best[2]
    inside = [i for i, s in enumerate(squeezed) if len(s) >= 2 and s in typed and len(typed) <= len(s) + 8]
    if len(inside) == 1:
        return inside[0]
    part_of = [i for i, s in enumerate(squeezed) if len(typed) >= 2 and typed in s]
    return part_of[0] if len(part_of) == 1 else None
