"""Time of the unanswered-questions page's work (find, cluster, suggest the nearest FAQ entry) with N long messages.

A fresh SQLite database gets N different unanswered messages of about 20,000 characters each (two merchants each),
then the page's computation runs twice with the live matcher (embedding re-ranker on): a first view and a second
one (cached suggestions). --code measures another checkout (e.g. /work/main, before bounded matching).

    .venv/bin/python bench/unanswered.py [--entries 3] [--chars 20000] [--code /work/main]

It prints figures only; it asserts nothing.
"""

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SENTENCES = [
    "我们是一家小餐馆，客人吃完饭就要发票，前台小妹不会弄。",
    "昨天晚上十点还在加班，电脑卡得要命，网络也时好时坏的。",
    "楼下新开了一家面馆，味道还不错，就是排队的人太多了哦。",
    "老板说这个月的账必须在月底前做完，不然要扣工资的。",
    "打了好几次客服电话都没人接，排队排了半个小时。",
    "开票软件升级以后界面全变了，找了半天找不到按钮。",
]
QUESTIONS = ["开普通发票一定要填购买方税号吗？", "电子税务局登录不上去怎么办？", "发票抬头写错了怎么办？", ""]


def story(n: int, chars: int) -> str:
    """A distinct long message: a question (or none) and a rant in an order of its own."""
    rng = random.Random(n)
    text = f"第{n}家店：" + QUESTIONS[n % len(QUESTIONS)]
    while len(text) < chars:
        text += rng.choice(SENTENCES)
    return text[:chars]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=3)
    parser.add_argument("--chars", type=int, default=20000)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose code is measured")
    args = parser.parse_args()
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    workdir = Path(tempfile.mkdtemp(prefix="bench-unanswered-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'unanswered.db'}"
    os.environ.pop("REDIS_URL", None)
    os.chdir(code)  # the embedding cache under var/

    from bot.bootstrap import prepare_database
    from core.conversation.models import ConversationTurn
    from core.database import session_scope
    from knowledge import unanswered
    from knowledge.live import get_live_knowledge

    prepare_database()
    when = datetime.now(UTC) - timedelta(hours=1)
    with session_scope() as db_session:
        for n in range(args.entries):
            for user in ("a", "b"):
                db_session.add(
                    ConversationTurn(
                        channel="api",
                        user_id=f"{user}{n}",
                        text=story(n, args.chars),
                        intent="fallback",
                        reply="…",
                        created_at=when,
                    )
                )
    calls = 0
    suggest = unanswered.suggest

    def counting(matcher, text):
        nonlocal calls
        calls += 1
        return suggest(matcher, text)

    unanswered.suggest = counting
    with session_scope() as db_session:
        snapshot = get_live_knowledge().current(db_session=db_session)
    print(f"code: {code}  matcher: {snapshot.matcher.mode}  {args.entries} messages of {args.chars} characters, x2")
    for view in ("first view", "second view"):
        started = time.perf_counter()
        with session_scope() as db_session:
            try:
                found = unanswered.clusters(
                    db_session=db_session, limit=100, matcher=snapshot.matcher, version=snapshot.version
                )
            except (TypeError, AttributeError):  # a checkout without cached suggestions
                found = unanswered.clusters(db_session=db_session, limit=100, matcher=snapshot.matcher)
        took = time.perf_counter() - started
        with_suggestion = sum(c.suggestion is not None for c in found)
        print(
            f"{view:12s}: {took:7.2f} s  clusters {len(found)}, with a suggestion {with_suggestion}, "
            f"suggestion calls so far {calls}"
        )


if __name__ == "__main__":
    main()
