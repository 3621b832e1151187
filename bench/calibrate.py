"""Fit the matcher's weights, confidence model and thresholds on a labelled set; write knowledge/data/matcher.yaml.

usage: python -m bench.calibrate [--data FILE.jsonl ...] [--write] [--max-wrong 0.0175] [--max-uncovered 0.05]
(default data: bench/data/calibration.jsonl and bench/data/styles.jsonl; bench/data/holdout.jsonl and holdout2.jsonl
are never fitted on, they only judge the result through `bench/styles.py --data`)

The matcher ranks the FAQ topics and the outside subjects (knowledge/data/out_of_scope.yaml) together. For each
weighting of the signals (grid), the decision statistic is the combined top score and its margin to the runner-up.
A logistic regression on (top, margin) predicts whether the first is right (an in-scope row's topic, or any outside
subject for an out-of-scope row); that probability is the confidence. Messages without any invoice/tax term get none.
The confidence never falls as score or margin rise (a feature fitted with a negative weight is left out).
The answer threshold is the lowest confidence at which wrong answers stay under --max-wrong of all rows and answers
to invoice questions the FAQ does not cover (not_answer rows of other styles than OFF_TOPIC: uncovered, outside,
adjacent) stay under --max-uncovered of those rows: a merchant given the nearest FAQ for a question it does not
answer is misled, one offered choices has 都不是/转人工 a tap away. An answer also needs a best score no lower than
the lowest one answered here (min_score), so that a vague message outside the data's range is not answered on its
margin alone. The clarify threshold keeps most off-topic rows out
of clarify; only messages about no invoice subject at all count there (OFF_TOPIC styles): offering choices for an
uncovered invoice question is not a wrong answer, and it leaves 都不是/转人工 one tap away. Naming a subject out of
scope takes the answer threshold too: saying "not ours" to an invoice question is as bad as a wrong answer. The fast
path (lexical stage alone) starts at the lowest lexical confidence at which it loses at most 0.2 % of the rows to
answers the re-ranker would get right.
"""

import argparse
import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from knowledge import service
from knowledge.embedding import load_embedder
from knowledge.matcher import DATA_DIR, Matcher, MatcherConfig, Policy, Signals, Weights, load_lexicon

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = (REPO / "bench" / "data" / "calibration.jsonl", REPO / "bench" / "data" / "styles.jsonl")
OFF_TOPIC = frozenset({"offtopic", "chatter", "smalltalk"})  # not_answer styles about no invoice subject at all
CLARIFY_OFF_TOPIC = 0.10  # share of off-topic rows the clarify threshold may let into clarify


def load_rows(path: Path) -> list[dict]:
    """Labelled rows with expect answer / not_answer."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r.get("expect") in ("answer", "not_answer")]


def build_matcher() -> Matcher:
    """The matcher over the shipped FAQ, with embeddings."""
    topics = service.shipped_topics()
    embedder = load_embedder(REPO / "var" / "embeddings.npz")
    if embedder is None:
        raise SystemExit("the embedding model is needed for calibration")
    matcher = Matcher(topics, lexicon=load_lexicon(), embedder=embedder)
    embedder.save()
    return matcher


def all_signals(matcher: Matcher, rows: list[dict]) -> list[Signals]:
    """Every signal for every row (the embedding always computed)."""
    return [matcher.embedding_signals(r["text"], matcher.lexical_signals(r["text"])) for r in rows]


def statistics(signals: list[Signals], weights: Weights, truth: list[int | None], outside: np.ndarray) -> np.ndarray:
    """Rows of (top, margin, domain, right, right_in_top3, top_is_outside) for one weighting; an out-of-scope row
    is right when an outside subject comes first."""
    out = []
    for sig, want in zip(signals, truth, strict=True):
        scores = sig.combine(weights)
        order = np.argsort(-scores)
        top, second = float(scores[order[0]]), float(scores[order[1]])
        first_outside = bool(outside[order[0]])
        right = (want is None and first_outside) or (want is not None and order[0] == want)
        faq = [i for i in order if not outside[i]][:3]
        out.append((top, top - second, float(sig.domain), right, want is not None and want in faq, first_outside))
    return np.array(out, dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 3000, l2: float = 1e-3) -> np.ndarray:
    """Logistic regression by Newton's method; returns (bias, w1, w2, ...)."""
    design = np.c_[np.ones(len(x)), x]
    beta = np.zeros(design.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(design @ beta, -50, 50)))
        grad = design.T @ (p - y) + l2 * beta
        hess = design.T @ (design * (p * (1 - p))[:, None]) + l2 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    return beta


def fit_monotone(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A logistic fit whose confidence never falls as score or margin rise: a feature that comes out with a negative
    weight (it only corrects the other's scale on this data) is left out and the rest refitted."""
    keep = list(range(x.shape[1]))
    while True:
        beta = fit_logistic(x[:, keep], y)
        negative = [k for k, b in zip(keep, beta[1:], strict=True) if b < 0]
        if not negative:
            full = np.zeros(x.shape[1] + 1)
            full[0] = beta[0]
            full[[k + 1 for k in keep]] = beta[1:]
            return full
        keep.remove(negative[0])


def choose_thresholds(
    conf: np.ndarray, stats: np.ndarray, in_domain: np.ndarray, off_topic: np.ndarray, limits: "Limits"
) -> dict:
    """Answer and clarify thresholds, and the outcome mix they give."""
    n = len(conf)
    right = stats[:, 3].astype(bool)
    first_outside = stats[:, 5].astype(bool)
    uncovered = ~in_domain & ~off_topic
    best = None
    for t in [*sorted(set(np.round(conf, 4))), 1.0]:
        answered = (conf >= t) & ~first_outside
        wrong = int((answered & ~right).sum())
        misled = int(answered[uncovered].sum())
        if wrong <= limits.max_wrong * n and misled <= limits.max_uncovered * uncovered.sum():
            best = t
            break
    answered = (conf >= best) & ~first_outside
    out_scope = ~in_domain
    unrecognised = conf[off_topic & ~first_outside]  # off-topic rows not put down to an outside subject
    clarify_at = best
    for t in sorted(set(np.round(unrecognised, 4)), reverse=True):
        if ((unrecognised >= t) & (unrecognised < best)).sum() > CLARIFY_OFF_TOPIC * off_topic.sum():
            break
        clarify_at = t
    clarify = (conf >= clarify_at) & ~answered & ~first_outside
    top3 = stats[:, 4].astype(bool)
    return {
        "answer_at": float(best),
        "min_score": float(np.floor(stats[answered, 0].min() * 100) / 100) if answered.any() else 0.0,
        "clarify_at": float(min(clarify_at, best)),
        "answered_right": float((answered & right)[in_domain].mean()),
        "answered_wrong_all": float((answered & ~right).sum() / n),
        "clarify_hit": float((clarify & top3)[in_domain].mean()),
        "oos_answered": float(answered[out_scope].mean()) if out_scope.any() else 0.0,
        "uncovered_answered": float(answered[uncovered].mean()) if uncovered.any() else 0.0,
        "oos_clarified": float(clarify[out_scope].mean()) if out_scope.any() else 0.0,
        "oos_recognised": float((first_outside & (conf >= best))[out_scope].mean()) if out_scope.any() else 0.0,
        "in_scope_called_outside": float((first_outside & (conf >= best))[in_domain].mean()),
    }


@dataclass(frozen=True)
class Limits:
    """What the answer threshold may cost: wrong answers as a share of all rows, answers to uncovered invoice
    questions as a share of those."""

    max_wrong: float
    max_uncovered: float


def evaluate(signals, truth, in_domain, off_topic, outside, weights: Weights, limits: Limits) -> tuple[Weights, dict]:
    """Fit the confidence model for a weighting and score it."""
    stats = statistics(signals, weights, truth, outside)
    domain = stats[:, 2] == 1
    beta = fit_monotone(stats[domain, :2], stats[domain, 3])
    fitted = Weights(**{**asdict(weights), "conf_bias": beta[0], "conf_score": beta[1], "conf_margin": beta[2]})
    conf = np.array([fitted.confidence(t, m, bool(d)) for t, m, d in stats[:, :3]])
    result = choose_thresholds(conf, stats, in_domain, off_topic, limits)
    result["top1"] = float(stats[in_domain, 3].mean())
    return fitted, result


FAST_PATH_LOSS = 0.002  # share of rows the fast path may answer wrongly where the re-ranker would be right


def fast_path(signals, truth, outside: np.ndarray, lexical: Weights, full: Weights) -> tuple[float, float]:
    """The lowest lexical confidence above which the lexical stage loses at most FAST_PATH_LOSS of the rows (an
    answer the re-ranker gets right, or any answer to an out-of-scope row); and the share of rows it covers."""
    rows = []
    for sig, want in zip(signals, truth, strict=True):
        scores = sig.combine(lexical)
        if float(scores[~outside].max() - scores[outside].max()) < Policy.clarify_band:
            continue  # an outside subject close by: always re-ranked (Matcher._decisive)
        order = np.argsort(-scores)
        confidence = lexical.confidence(float(scores[order[0]]), float(scores[order[0]] - scores[order[1]]), sig.domain)
        full_right = want is not None and int(np.argmax(sig.combine(full))) == want
        lost = (want is None and not outside[order[0]]) or (want is not None and order[0] != want and full_right)
        rows.append((confidence, lost))
    rows.sort(reverse=True)
    threshold, covered, losses = 1.0, 0, 0
    for i, (confidence, lost) in enumerate(rows):
        losses += lost
        if losses > FAST_PATH_LOSS * len(signals):
            break
        threshold, covered = confidence, i + 1
    return round(max(threshold, 0.5), 4), covered / len(signals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=list(DEFAULT_DATA),
    )
    parser.add_argument(
        "--max-wrong", type=float, default=0.0175, help="share of all rows allowed to be answered wrongly"
    )
    parser.add_argument(
        "--max-uncovered",
        type=float,
        default=0.05,
        help="share of uncovered invoice questions (not_answer rows outside OFF_TOPIC) allowed an FAQ answer",
    )
    parser.add_argument("--write", action="store_true", help="write knowledge/data/matcher.yaml")
    args = parser.parse_args()

    rows = [row for path in args.data for row in load_rows(path)]
    matcher = build_matcher()
    index = {tid: i for i, tid in enumerate(matcher.ids)}
    truth = [index.get(r.get("topic")) if r["expect"] == "answer" else None for r in rows]
    in_domain = np.array([t is not None for t in truth])
    off_topic = np.array([r["expect"] == "not_answer" and r.get("style") in OFF_TOPIC for r in rows])
    signals = all_signals(matcher, rows)
    limits = Limits(max_wrong=args.max_wrong, max_uncovered=args.max_uncovered)
    print(f"{len(rows)} rows: {int(in_domain.sum())} in scope, {int((~in_domain).sum())} out of scope")

    results = []
    for answer_w, emb_w, passage_w, conflict_w in itertools.product(
        (0.0, 0.25, 0.5, 0.75), (0.75, 1.0, 1.5, 2.0), (0.0, 0.25, 0.5), (0.0, 0.5, 1.0)
    ):
        weights = Weights(answer=answer_w, embedding=emb_w, passage=passage_w, conflict=conflict_w)
        fitted, result = evaluate(signals, truth, in_domain, off_topic, matcher.outside, weights, limits)
        results.append((result["answered_right"], result["top1"], fitted, result))
    results.sort(key=lambda r: (r[0], r[1]), reverse=True)
    for _right, _top1, fitted, result in results[:5]:
        print(
            f"full  a={fitted.answer} e={fitted.embedding} p={fitted.passage} c={fitted.conflict}: "
            + " ".join(f"{k}={v:.3f}" for k, v in result.items())
        )
    _, _, full_w, full_r = results[0]

    lexical_results = []
    for answer_w, conflict_w in itertools.product((0.0, 0.25, 0.5, 0.75), (0.0, 0.5, 1.0)):
        weights = Weights(answer=answer_w, embedding=0.0, passage=0.0, conflict=conflict_w)
        fitted, result = evaluate(signals, truth, in_domain, off_topic, matcher.outside, weights, limits)
        lexical_results.append((result["answered_right"], result["top1"], fitted, result))
    lexical_results.sort(key=lambda r: (r[0], r[1]), reverse=True)
    _, _, lex_w, lex_r = lexical_results[0]
    print(f"lexical a={lex_w.answer} c={lex_w.conflict}: " + " ".join(f"{k}={v:.3f}" for k, v in lex_r.items()))

    fast_confidence, coverage = fast_path(signals, truth, matcher.outside, lex_w, full_w)
    print(f"fast path: lexical confidence >= {fast_confidence} covers {coverage:.1%}, loses <= {FAST_PATH_LOSS:.1%}")

    config = MatcherConfig(
        full=full_w,
        lexical=lex_w,
        policy=Policy(
            answer_at=round(full_r["answer_at"], 4),
            min_score=full_r["min_score"],
            clarify_at=round(full_r["clarify_at"], 4),
            outside_at=round(full_r["answer_at"], 4),
            fast_confidence=fast_confidence,
        ),
        lexical_policy=Policy(
            answer_at=round(lex_r["answer_at"], 4),
            min_score=lex_r["min_score"],
            clarify_at=round(lex_r["clarify_at"], 4),
            outside_at=round(lex_r["answer_at"], 4),
        ),
    )
    if args.write:
        data = {
            k: {f: _plain(v) for f, v in asdict(getattr(config, k)).items()}
            for k in ("full", "lexical", "policy", "lexical_policy")
        }
        header = "# Written by `python -m bench.calibrate --write`; re-run it after large FAQ changes.\n"
        (DATA_DIR / "matcher.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        print(f"wrote {DATA_DIR / 'matcher.yaml'}")


def _plain(value):
    return round(float(value), 4) if isinstance(value, float | np.floating) and not math.isnan(value) else value


if __name__ == "__main__":
    main()
