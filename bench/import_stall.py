"""Chat latency while a large FAQ import is rebuilt: the matcher rebuild runs in the background and the old matcher
answers meanwhile.

A fresh SQLite database with the shipped FAQ gets N new entries (synthetic, each different) in one import; then the
live knowledge base is asked for its snapshot and FAQ questions are matched, back to back, until the rebuild is done.
Prints how long the rebuild took and the latency of the matches made during it (with --code /work/main, where the
rebuild happens inside the first request after the import, that request's time is the stall).

    .venv/bin/python bench/import_stall.py [--entries 1700] [--lexical] [--code /work/main]

It prints figures only; it asserts nothing.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOPICS = ["发票", "税号", "抬头", "红字", "作废", "勾选", "申报", "开票软件", "数电票", "专票"]
TROUBLES = ["打印不全", "显示异常", "金额不对", "无法下载", "提示超时", "页面空白", "无法提交", "重复开具"]


def synthetic(n: int) -> dict:
    topic, trouble = TOPICS[n % len(TOPICS)], TROUBLES[(n // len(TOPICS)) % len(TROUBLES)]
    return {
        "id": f"imported_{n:05d}",
        "category": "导入",
        "question": f"第{n}号网点的{topic}{trouble}怎么办？",
        "alternates": [f"{topic}{trouble}（网点{n}）", f"网点{n}{topic}出问题了"],
        "answer": f"请按第{n}号处理流程操作：检查{topic}设置后重试。",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1700)
    parser.add_argument("--lexical", action="store_true", help="without the embedding model")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose code is measured")
    args = parser.parse_args()
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    workdir = Path(tempfile.mkdtemp(prefix="bench-import-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'import.db'}"
    os.environ["MATCHER_EMBEDDINGS"] = "false" if args.lexical else "true"
    os.environ.pop("REDIS_URL", None)
    os.chdir(workdir)  # a cold embedding cache: the imported entries are new anyway

    from bot.bootstrap import prepare_database
    from core.database import session_scope
    from knowledge import service
    from knowledge.live import get_live_knowledge
    from knowledge.schemas import FaqIn

    prepare_database()
    live = get_live_knowledge()
    with session_scope() as db_session:
        first = live.current(db_session=db_session)
    questions = [e.question for e in service.default_entries()]
    print(f"code: {code}  matcher: {first.matcher.mode}  importing {args.entries} entries")
    with session_scope() as db_session:
        service.import_entries(db_session=db_session, entries=[FaqIn(**synthetic(n)) for n in range(args.entries)])
    live.invalidate()
    started = time.perf_counter()
    latencies: list[float] = []
    n = 0
    while True:
        asked = time.perf_counter()
        with session_scope() as db_session:
            snapshot = live.current(db_session=db_session)
        snapshot.matcher.match(questions[n % len(questions)])
        latencies.append(time.perf_counter() - asked)
        n += 1
        if len(snapshot.entries) > len(first.entries):
            break
        time.sleep(0.005)
    rebuilt = time.perf_counter() - started
    print(f"rebuild done after {rebuilt:.1f} s; {len(latencies)} messages matched meanwhile")
    print(
        f"latency during the rebuild: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.0f} ms (the first message: {latencies[0] * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
