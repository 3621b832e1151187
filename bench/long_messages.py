"""How many long-story variants of the shipped FAQ questions the matcher still answers right, and what each costs.

Every shipped question is wrapped in three stories (an angry one of ~300 characters, a rambling one of ~1,200 with
the question near the end, a 2,000+ one that opens with the question), then matched as the router would (the
first MAX_MESSAGE_CHARS characters). Run it from another checkout's code with --code to compare (e.g. /work/main,
before excerpting):

    .venv/bin/python bench/long_messages.py [--lexical] [--code /work/main]

It prints figures only; it asserts nothing.
"""

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROUTER_CHARS = 2000  # the router's MAX_MESSAGE_CHARS default

ANGRY = [
    "我真的要气死了，你们这个系统太差劲了！",
    "我们店开了三年了，一直用你们的系统开发票，从来没遇到这么离谱的事。",
    "客户在前台等着，老板在旁边一直催，我急得满头大汗。",
    "打了好几次客服电话都没人接，排队排了半个小时。",
    "昨天晚上加班到十点，今天一早又来弄这个。",
    "同事说他那边上个月也遇到过，但是他也不记得怎么弄好的。",
    "我已经重启了电脑好几次了，网也换过了，还是一样。",
    "你们能不能把系统做得简单一点，每次都要找半天。",
    "真的太耽误事了，一天的生意都受影响。",
    "说实话我对电脑不太懂，平时都是会计弄的，她今天请假了。",
]


def stories(question: str, rng: random.Random) -> list[str]:
    """Three long messages around one question."""

    def filler(chars: int) -> str:
        out = ""
        while len(out) < chars:
            out += rng.choice(ANGRY)
        return out

    return [
        f"{filler(150)}{question}{filler(150)}",
        f"{filler(1100)}我就想问一下，{question}，麻烦快点回复。",
        f"{question}。{filler(2100)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lexical", action="store_true", help="without the embedding re-ranker")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose matcher is measured")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))

    from knowledge import service
    from knowledge.embedding import load_embedder
    from knowledge.matcher import Matcher, Topic, load_lexicon

    entries = service.default_entries()
    topics = [Topic(e.id, e.question, tuple(e.alternates), tuple(e.keywords), e.answer) for e in entries]
    embedder = None if args.lexical else load_embedder(REPO / "var" / "embeddings.npz")
    matcher = Matcher(topics, lexicon=load_lexicon(), embedder=embedder)
    rng = random.Random(7)
    right = wrong = short_right = 0
    by_shape = [0, 0, 0]
    seconds: list[float] = []
    cases = 0
    for entry in entries:
        short_right += matcher.match(entry.question).topic == entry.id
        for shape, text in enumerate(stories(entry.question, rng)):
            started = time.perf_counter()
            result = matcher.match(text[:ROUTER_CHARS])
            seconds.append(time.perf_counter() - started)
            cases += 1
            if result.topic == entry.id:
                right += 1
                by_shape[shape] += 1
            elif result.topic is not None:
                wrong += 1
    seconds.sort()
    n = len(entries)
    print(f"code: {args.code}  mode: {matcher.mode}  topics: {n}  long variants: {cases}")
    print(f"short questions answered right: {short_right}/{n}")
    print(
        f"long variants answered right: {right}/{cases} ({right / cases:.0%}); wrong answers: {wrong}; "
        f"by shape (angry ~300 / question at the end ~1,200 / question first 2,000): {by_shape}"
    )
    print(
        f"match time per long message: median {seconds[len(seconds) // 2] * 1000:.0f} ms, "
        f"max {seconds[-1] * 1000:.0f} ms, total {sum(seconds):.1f} s"
    )


if __name__ == "__main__":
    main()
