"""Troubleshooting guides in chat: ask a step, follow the chosen option, go back, restart, pause, resume, hand off."""

import logging

from core.conversation import outcomes
from core.conversation.state import GuideProgress
from core.messages import Option, Reply
from handlers import choices, greeting, handoff, payloads, values
from handlers.turn import Turn
from knowledge.guides import Guide, GuideOption, GuideStep

log = logging.getLogger(__name__)

RESUME = Option("继续刚才的排查", payloads.make("guide", "resume"))
SOLVED = Option("解决了", payloads.make("guide", "done", "yes"))
UNSOLVED = Option("还没解决", payloads.make("guide", "done", "no"))
FEEDBACK_QUESTION = outcomes.GUIDE_FEEDBACK_QUESTION
DONE_STEP = "done"  # path entries with this step record the answer to FEEDBACK_QUESTION
HINT = "（可回复：返回 / 重来 / 退出 / 转人工）"
STALE = "这个选项已经过期了，请按当前的问题选择："
MAX_PATH = 40
MAX_SUMMARY_CHARS = 120
MAX_IDLE = 3  # replies to other questions before a paused guide is dropped

_COMMANDS = {
    "back": {"返回", "返回上一步", "上一步", "回到上一步", "退回", "后退", "back"},
    "restart": {"重来", "重新来", "重新开始", "从头开始", "从头来", "重新排查", "再来一次", "restart"},
    "exit": {"退出", "结束", "退出排查", "结束排查", "不用了", "算了", "取消", "quit", "exit"},
    "resume": {"继续", "继续排查", "继续刚才的排查", "接着排查", "回到排查", "resume"},
}
# Asking for the main menu inside a guide shows the menu (the guide pauses and can be resumed).
_MENU = {"菜单", "主菜单", "目录", "功能", "帮助", "menu", "help", "start", "/menu", "/help", "/start"}


def option_payload(step_id: str, number: int) -> str:
    """The payload of a step's option (1-based number); short enough for Telegram's 64-byte callback data."""
    return payloads.make("guide", step_id, number)


def command(text: str) -> str | None:
    """ "back", "restart", "exit" or "resume" when the message is one of those commands."""
    squeezed = choices.squeeze(text)
    return next((name for name, words in _COMMANDS.items() if squeezed in words), None)


def current(turn: Turn) -> tuple[Guide, GuideProgress] | None:
    """The guide in progress and where; progress that no longer fits the shipped guides is dropped."""
    progress = turn.state.guide
    if progress is None:
        return None
    guide = turn.guides.get(progress.guide)
    if guide is None or guide.step(progress.step) is None:
        turn.state.guide = None
        return None
    if progress.feedback and _chosen(guide, progress) is None:
        progress.feedback = False
    return guide, progress


def is_active(turn: Turn) -> bool:
    """True when the last reply asked a guide's question (a number or words answer it)."""
    found = current(turn)
    return found is not None and not found[1].paused


def is_paused(turn: Turn) -> bool:
    """True when a guide waits to be resumed."""
    found = current(turn)
    return found is not None and found[1].paused


def on_answer(turn: Turn) -> Reply | None:
    """A message while a guide's question is open: the option it picks (by number, words, a yes/no or a reply in
    words such as "不是，上个月开的"), a value the step accepts (checked, re-asked when wrong), a command (返回, 重来,
    退出), a handoff with what the guide learned, the main menu, or the question again for an answer that fits no
    option or a greeting; None for anything else (the guide pauses when the reply leaves it). Pinyin is read as the
    Han words it stands for: "fapiao zenme zuofei" is a question of its own, as "发票怎么作废" is."""
    said = turn.han
    payload = pick(turn, said)
    if payload is not None:
        return _follow(turn, payload)
    reply = on_value(turn)
    if reply is not None:
        return reply
    reply = steer(turn, command(turn.text))
    if reply is not None:
        return reply
    if handoff.wants_person(turn):
        return hand_off(turn)
    payload = pick_polar(turn, said) or pick_meaning(turn, said)
    if payload is not None:
        return _follow(turn, payload)
    if choices.is_bare_answer(said):
        count = len(current_options(turn))
        return show(turn, lead=f"请回复 1-{count} 的数字，选择最符合的一项：")
    if choices.squeeze(turn.text) in _MENU:
        return greeting.welcome(turn)  # the router pauses the guide and offers to resume it
    if greeting.is_greeting(turn):
        found = current(turn)
        hello = "不客气！" if "谢" in turn.text else "您好！"
        title = found[0].title if found else ""
        return show(turn, lead=f"{hello}我们正在排查：{title}。请先回答这个问题：")
    return None


def on_value(turn: Turn) -> Reply | None:
    """A value pasted at a step that accepts one: a wrong one is explained and asked again, a valid one answers the
    step; None when the step takes no value or the message carries none."""
    found = current(turn)
    if found is None or found[1].feedback:
        return None
    guide, progress = found
    step = guide.steps[progress.step]
    if step.value is None:
        return None
    reading = values.read(step.value.kind, turn.text)
    if reading is None:
        return None
    noun = values.NOUNS[step.value.kind]
    if reading.value is None:
        lead = f"抱歉，您发的{noun}好像不对：{reading.problem}。\n请核对后再发一次，或者直接选择下面最符合的一项："
        return _again(guide, progress, lead=lead)
    progress.values[step.id] = reading.value
    note = f"收到，{noun}：{reading.value}" + (f"（{reading.note}）" if reading.note else "") + "。"
    spec = step.value
    number = spec.today if reading.is_today and spec.today is not None else spec.option
    if number is not None:
        reply = choose(turn, step.id, number)
        reply.text = f"{note}\n\n{reply.text}"
        return reply
    _record(progress, [guide.id, step.id, f"发来{noun}"])
    progress.paused, progress.idle = False, 0
    progress.step = spec.next or progress.step
    return _ask(guide, progress, lead=f"{note}格式没有问题。")


def on_command(turn: Turn) -> Reply | None:
    """A command while a guide is paused: 继续 (or 返回) resumes it, 重来 restarts, 退出 ends it; None otherwise."""
    typed = command(turn.text)
    return steer(turn, "resume" if typed == "back" else typed)


def on_option(turn: Turn) -> Reply:
    """Carry out a guide option: guide:resume, guide:done:yes|no, guide:start:<guide> or guide:<step>:<number>."""
    args = turn.payload.args
    head, tail = (args[0], payloads.SEPARATOR.join(args[1:])) if args else ("", "")
    if head == "resume":
        return resume(turn)
    if head == "done":
        return feedback(turn, solved=tail == "yes")
    if head == "start" and tail in turn.guides:
        return start(turn, turn.guides[tail], confidence=1.0)
    if tail.isdigit():
        return choose(turn, head, int(tail))
    log.info("stale guide option %s", turn.payload)
    return resume(turn)


def steer(turn: Turn, typed: str | None) -> Reply | None:
    """Carry out a typed guide command (back, restart, exit, resume); None when there is none or no guide."""
    if typed == "back":
        return back(turn)
    if typed == "restart":
        return restart(turn)
    if typed == "exit":
        return leave(turn)
    if typed == "resume" and current(turn) is not None:
        return resume(turn)
    return None


def _follow(turn: Turn, payload: str) -> Reply:
    """Carry out one of the current question's options (always a guide payload)."""
    turn.payload = payloads.parse(payload)
    return on_option(turn)


def start(
    turn: Turn,
    guide: Guide,
    *,
    confidence: float | None = None,
    candidates: list[str] | None = None,
    path: list[list[str]] | None = None,
    lead: str | None = None,
) -> Reply:
    """Begin a guide at its first step: the summary of the topic (or `lead`), then the first question; questions the
    opening message already answered ("数电票红冲了…" answers "要冲的是哪种发票？") are skipped."""
    # Typed: the message itself; chosen as an option on an answer: the question that answer replied to.
    answered = turn.state.last_question if turn.state.last_topic == guide.id else None
    opening = turn.text if turn.payload is None else answered
    turn.state.guide = GuideProgress(guide.id, guide.start, path=list(path or []))
    turn.state.last_topic = turn.state.last_guide = guide.id
    turn.state.unsure_streak = 0
    lead = summary(turn, guide) if lead is None else lead
    known = prefill(opening, guide, turn.state.guide) if opening else []
    if known:
        lead = f"{lead}\n\n根据您的描述：{'；'.join(known)}。"
    return _ask(
        guide,
        turn.state.guide,
        lead=lead,
        confidence=confidence,
        candidates=candidates,
    )


def prefill(text: str, guide: Guide, progress: GuideProgress) -> list[str]:
    """Answer the questions ahead that a description already answers by naming an option or by saying what a yes/no
    question asks about done or not done ("对方还没确认"); options that lead on only; their labels."""
    known: list[str] = []
    seen = {progress.step}
    while True:
        step = guide.steps[progress.step]
        labels = [o.label for o in step.options]
        index = choices.mentioned(text, labels)
        index = choices.polar_mentioned(text, labels) if index is None else index
        option = step.options[index] if index is not None else None
        if option is None or option.next is None or option.next in seen:
            return known
        _record(progress, [guide.id, step.id, option.label])
        known.append(option.label)
        progress.step = option.next
        seen.add(option.next)


def summary(turn: Turn, guide: Guide) -> str:
    """The live FAQ answer's first line (so that FAQ edits show), or the guide's intro when that is missing or long."""
    entry = turn.knowledge.entries.get(guide.id)
    first = next((line.strip() for line in entry.answer.splitlines() if line.strip()), "") if entry else ""
    return first if 0 < len(first) <= MAX_SUMMARY_CHARS else guide.intro


def show(turn: Turn, lead: str = "") -> Reply | None:
    """Ask the current question again (and un-pause the guide); None without a guide."""
    found = current(turn)
    return None if found is None else _again(*found, lead=lead)


def resume(turn: Turn) -> Reply:
    """Go back to the paused guide where the merchant left it."""
    found = current(turn)
    if found is None:
        return Reply(text="刚才的排查已经结束或超时了。请重新描述您遇到的问题，我再帮您一步步排查。", intent="fallback")
    return _again(*found, lead=f"好的，我们继续刚才的排查：{found[0].title}。")


def choose(turn: Turn, step_id: str, number: int) -> Reply:
    """Follow option `number` (1-based) of step `step_id`: the next question, a fix, a handoff or another guide."""
    found = current(turn)
    if found is None:
        return resume(turn)
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
        return hand_off(turn, note=option.handoff)
    target = turn.guides.get(option.guide or "")
    if target is None:
        return hand_off(turn, note=f"商户选择了“{option.label}”，需要人工继续排查。")
    lead = f"好的，我们按“{target.title}”继续排查。\n{summary(turn, target)}"
    return start(turn, target, path=progress.path, lead=lead)


def feedback(turn: Turn, solved: bool) -> Reply:
    """After a fix: close the guide when it helped; otherwise go on where the guide says, or hand off."""
    found = current(turn)
    if found is None:
        return resume(turn)
    guide, progress = found
    if not progress.feedback:
        return _again(guide, progress, lead=STALE)
    option = _chosen(guide, progress)
    if solved:
        turn.state.guide = None
        return Reply(text=outcomes.GUIDE_SOLVED, intent="guide", topic=guide.id)
    _record(progress, [guide.id, DONE_STEP, UNSOLVED.label])
    progress.feedback = False
    if option is not None and option.unsolved is not None:
        progress.step = option.unsolved
        return _ask(guide, progress, lead="好的，我们继续排查。")
    return hand_off(turn, note="已按建议处理，问题仍未解决。")


def back(turn: Turn) -> Reply | None:
    """Go one question back (across a switch of guide too); None without a guide."""
    found = current(turn)
    if found is None:
        return None
    progress = found[1]
    if progress.feedback:
        progress.feedback = False
        progress.path.pop()
        return show(turn, lead="好的，回到上一步。")
    if not progress.path:
        return show(turn, lead="已经是第一步了。")
    guide_id, step_id, _ = progress.path.pop()
    progress.guide = guide_id
    if step_id == DONE_STEP and progress.path:
        progress.step, progress.feedback = progress.path[-1][1], True
    else:
        progress.step = step_id
    return show(turn, lead="好的，回到上一步。")


def restart(turn: Turn) -> Reply | None:
    """Start over from the first question of the guide the merchant began with; None without a guide."""
    found = current(turn)
    if found is None:
        return None
    guide, progress = found
    first = turn.guides.get(progress.path[0][0]) if progress.path else guide
    first = first or guide
    return start(turn, first, lead=f"好的，我们从头开始排查：{first.title}。")


def leave(turn: Turn) -> Reply | None:
    """End the guide at the merchant's request; None without a guide."""
    found = current(turn)
    if found is None:
        return None
    turn.state.guide = None
    return Reply(
        text=f"好的，已结束“{found[0].title}”的排查。还有其他问题可以直接问我，需要人工帮助请回复“转人工”。",
        intent="guide",
        topic=found[0].id,
    )


def hand_off(turn: Turn, note: str | None = None) -> Reply:
    """Hand off to a human with what the guide learned (a plain handoff without a guide)."""
    learned = learned_so_far(turn, note)
    return handoff.start(turn, learned)  # the guide's progress goes into the ticket; the handoff ends the guide


def learned_so_far(turn: Turn, note: str | None = None) -> handoff.Learned | None:
    """What the guide in progress found out: the questions answered, the fixes suggested, the conclusion."""
    found = current(turn)
    if found is None:
        return None
    guide, progress = found
    checked, suggested = [], []
    for guide_id, step_id, label in progress.path:
        if step_id == DONE_STEP:
            checked.append((FEEDBACK_QUESTION, label))
            continue
        step = turn.guides[guide_id].step(step_id) if guide_id in turn.guides else None
        if step is None:
            continue
        value = progress.values.get(step_id)
        checked.append((step.text, f"{label}（{value}）" if value else label))
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


def pick(turn: Turn, text: str) -> str | None:
    """The payload of the current question's option a message picks by number or by its words."""
    options = current_options(turn)
    if not options:
        return None
    number = choices.parse_choice(text, len(options))
    if number is not None:
        return options[number].payload
    index = choices.by_words(text, [o.label for o in options])
    return options[index].payload if index is not None else None


def pick_polar(turn: Turn, text: str) -> str | None:
    """The payload of the one yes-like or no-like option a short "是的" / "没有" answers, if there is one."""
    options = current_options(turn)
    index = choices.by_yes_or_no(text, [o.label for o in options])
    return options[index].payload if index is not None else None


def pick_meaning(turn: Turn, text: str) -> str | None:
    """The payload of the option a short reply in words means ("不是，上个月开的" → "不是，之前开的")."""
    options = current_options(turn)
    index = choices.by_meaning(text, [o.label for o in options])
    return options[index].payload if index is not None else None


def current_options(turn: Turn) -> list[Option]:
    """The options the guide's current question offers."""
    found = current(turn)
    if found is None:
        return []
    guide, progress = found
    if progress.feedback:
        return [SOLVED, UNSOLVED]
    step = guide.steps[progress.step]
    return [Option(o.label, option_payload(step.id, n)) for n, o in enumerate(step.options, 1)]


def offer_resume(turn: Turn, reply: Reply) -> Reply:
    """After a reply that left the guide: pause it and offer to resume (dropped after a few such replies)."""
    found = current(turn)
    if found is None:
        return reply
    progress = found[1]
    if reply.intent == "guide" and not progress.paused:
        return reply
    progress.idle = progress.idle + 1 if progress.paused else 1
    progress.paused = True
    if progress.idle > MAX_IDLE:
        turn.state.guide = None
        return reply
    if all(o.payload != RESUME.payload for o in reply.options):
        reply.options = [*reply.options, RESUME]
    return reply


def start_option(guide: Guide) -> Option:
    """An option that starts a guide (offered when another guide is paused)."""
    return Option("按步骤排查这个问题", payloads.make("guide", "start", guide.id))


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
