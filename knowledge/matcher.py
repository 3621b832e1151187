"""The FAQ matcher: lexical recall over characters and pinyin, an embedding re-ranker, calibrated outcomes.

A message is folded (full-width, case, typed pinyin read back as Han words, synonyms, fillers), compared with
every phrasing of every topic by TF-IDF over character and pinyin n-grams (typo-robust), and with the answers.
Pasted error codes hit their topic directly. When that is not decisive, the multilingual-e5 embedding of the
message re-ranks all topics.
Only a bounded part of a message is read (core.limits): a long one is matched on an excerpt of its most
informative clauses, and the re-ranker runs on at most RERANK_MAX_CHARS characters, a few messages at a time
(RerankGate); a message that finds no free slot soon gets the lexical decision.
Subjects the bot does not cover (topics marked `outside`) are ranked with the FAQ topics and lead to out_of_scope;
a topic on the other side of a fact the message states (本月 against 上月) ranks lower.
A logistic model over the best score and its margin to the runner-up gives the confidence, which picks the
outcome: answer, clarify (offer the top choices), out_of_scope or not_sure. A short question that says nothing the
two leading topics do not both say, or one that asks about a side of the subject (the accounting entry, how long to
keep it, a penalty) the first topic says nothing of, is offered as a choice rather than answered.
"""

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from core import metrics
from core.limits import EXCERPT_CHARS, RERANK_MAX_CHARS
from core.text import Lexicon, error_codes, fold, units
from knowledge.embedding import Embedder
from knowledge.excerpt import cut, excerpt
from knowledge.lexical import LexicalIndex, features
from knowledge.pinyin import PinyinIndex

Outcome = Literal["answer", "clarify", "out_of_scope", "not_sure"]
# The Policy setting that decided an outcome: the confidence reached answer_at (answer), fell below it but reached
# clarify_at (clarify), fell below clarify_at (not_sure), or, with an outside subject first, reached outside_at
# (out_of_scope; below it, not_sure); min_score: confident but the best score was below it; generic: an answer made a
# choice, the message saying nothing the two leading topics do not both say; aspect: an answer made a choice, the
# message asking about a side of the subject (accounting, retention…) the topic says nothing of; empty: nothing to
# compare.
Gate = Literal["answer_at", "clarify_at", "outside_at", "min_score", "generic", "aspect", "empty"]
DATA_DIR = Path(__file__).resolve().parent / "data"
# Characters of question words and particles: a pair of them carries nothing that tells two topics apart.
FUNCTION_CHARS = frozenset(
    "怎么什么为什么能不能吗呢了的吧啊呀我你他她们是不有没要在这那个还就都也和跟与或请问一下办弄搞整样何咋啥"
)
QUESTION_CHARS = frozenset("怎咋何吗啥什")  # a message with none of them states (a pasted error) rather than asks
GENERIC_MAX_PAIRS = 8  # a message with more content than this is specific enough to answer on its score


@dataclass(frozen=True)
class Topic:
    """What the matcher needs of an FAQ entry."""

    id: str
    question: str
    alternates: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    answer: str = ""
    outside: bool = False  # a subject the bot does not cover (knowledge/outside.py), ranked to recognise it

    @property
    def phrasings(self) -> tuple[str, ...]:
        """The question and its other phrasings."""
        return (self.question, *self.alternates)


@dataclass(frozen=True)
class Candidate:
    """A topic and its combined score."""

    topic: str
    score: float


@dataclass(frozen=True)
class MatchResult:
    """Ranked FAQ candidates, the confidence that the first is right, the outcome it leads to, and the outside
    subject recognised when the outcome is out_of_scope; and why: the best score and its margin to the runner-up
    (outside subjects included), and the Policy setting (`gate`, its value `threshold`) that decided the outcome."""

    outcome: Outcome
    confidence: float
    candidates: list[Candidate]
    reranked: bool = False
    outside: str | None = None
    score: float = 0.0
    margin: float = 0.0
    gate: Gate = "empty"
    threshold: float | None = None

    @property
    def topic(self) -> str | None:
        """The answered topic, when the outcome is an answer."""
        return self.candidates[0].topic if self.outcome == "answer" and self.candidates else None

    def choices(self, limit: int = 3) -> list[str]:
        """Topic ids worth offering as choices."""
        return [c.topic for c in self.candidates[:limit]]


@dataclass
class Weights:
    """How the signals add up, and how score and margin map to a confidence."""

    phrasing: float = 1.0
    answer: float = 0.3
    embedding: float = 1.0
    passage: float = 0.3
    error_code: float = 1.0
    conflict: float = 0.5
    conf_bias: float = -4.0
    conf_score: float = 3.0
    conf_margin: float = 6.0

    def confidence(self, top: float, margin: float, domain: bool = True) -> float:
        """Calibrated probability that the best topic is right; nil for a message with no invoice/tax term."""
        if not domain:
            return 0.0
        return sigmoid(self.conf_bias + self.conf_score * top + self.conf_margin * margin)


@dataclass
class Signals:
    """Per-topic evidence for one message; absent embedding signals count as zero."""

    phrasing: np.ndarray
    answer: np.ndarray
    error_code: np.ndarray
    domain: bool = True
    embedding: np.ndarray | None = None
    passage: np.ndarray | None = None
    conflict: np.ndarray | None = None  # 1 where the topic takes the other side of a fact the message states

    def combine(self, weights: "Weights") -> np.ndarray:
        """The weighted sum that ranks topics."""
        total = weights.phrasing * self.phrasing + weights.answer * self.answer
        total = total + weights.error_code * self.error_code
        if self.conflict is not None:
            total = total - weights.conflict * self.conflict
        if self.embedding is not None:
            total = total + weights.embedding * self.embedding + weights.passage * self.passage
        return total


@dataclass
class Policy:
    """Confidence thresholds for each outcome, and when the lexical stage alone may answer."""

    answer_at: float = 0.8
    min_score: float = 0.0  # no answer below the lowest best score an answer had in calibration
    clarify_at: float = 0.35
    outside_at: float = 0.35
    clarify_band: float = 0.35
    fast_confidence: float = 0.97
    max_choices: int = 3


@dataclass
class MatcherConfig:
    """Weights and policy for the full (embedding) mode and for the lexical-only mode."""

    full: Weights = field(default_factory=Weights)
    lexical: Weights = field(default_factory=lambda: Weights(embedding=0.0, passage=0.0))
    policy: Policy = field(default_factory=Policy)
    lexical_policy: Policy = field(default_factory=Policy)

    @classmethod
    def load(cls, path: Path = DATA_DIR / "matcher.yaml") -> "MatcherConfig":
        """Read the shipped calibration; defaults when the file is absent."""
        if not path.exists():
            return cls()
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(
            full=Weights(**data.get("full", {})),
            lexical=Weights(**data.get("lexical", {})),
            policy=Policy(**data.get("policy", {})),
            lexical_policy=Policy(**data.get("lexical_policy", {})),
        )


def load_lexicon(path: Path = DATA_DIR / "lexicon.yaml") -> Lexicon:
    """The shipped domain vocabulary."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return Lexicon(
        synonyms=data.get("synonyms", {}),
        fillers=data.get("fillers", []),
        domain_terms=data.get("domain_terms", []),
        abbreviations=data.get("abbreviations", {}),
        non_domain=data.get("non_domain", []),
        contrasts=data.get("contrasts", []),
        aspects=data.get("aspects", {}),
    )


def sigmoid(x: float) -> float:
    """The logistic function."""
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


class RerankGate:
    """At most `concurrency` re-rankings at once; a caller waits at most `wait_seconds` for a slot."""

    def __init__(self, *, concurrency: int = 1, wait_seconds: float = 0.05) -> None:
        self.concurrency = max(1, concurrency)
        self.wait_seconds = max(0.0, wait_seconds)
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self.skipped = 0

    def acquire(self) -> bool:
        """Take a slot; False when none came free in time."""
        if self._slots.acquire(timeout=self.wait_seconds) if self.wait_seconds else self._slots.acquire(False):
            return True
        self.skipped += 1
        metrics.RERANK_SKIPPED.inc()
        return False

    def release(self) -> None:
        """Give a slot back."""
        self._slots.release()


class Matcher:
    """Matches a merchant's message to FAQ topics."""

    def __init__(
        self,
        topics: Sequence[Topic],
        *,
        lexicon: Lexicon,
        embedder: Embedder | None = None,
        config: MatcherConfig | None = None,
        gate: RerankGate | None = None,
    ) -> None:
        self.topics = list(topics)
        self.ids = [t.id for t in self.topics]
        self.outside = np.array([t.outside for t in self.topics], dtype=bool)
        self.lexicon = lexicon
        self.embedder = embedder
        self.config = config or MatcherConfig.load()
        self.gate = gate
        n = len(self.topics)
        phrasings, groups = [], []
        for gi, topic in enumerate(self.topics):
            for text in topic.phrasings:
                phrasings.append(text)
                groups.append(gi)
        # Phrasings are laid out topic by topic; each topic's block starts here (every topic has a question).
        self._starts = np.flatnonzero(np.r_[True, np.diff(np.asarray(groups, dtype=np.int64)) != 0]) if n else None
        prepared_phrasings = [self.prepare(p) for p in phrasings]
        self._phrasing_index = LexicalIndex(prepared_phrasings, groups, n)
        self._answer_index = LexicalIndex([self.prepare(t.answer) for t in self.topics], list(range(n)), n)
        self._codes: dict[str, list[int]] = {}
        for gi, topic in enumerate(self.topics):
            for keyword in topic.keywords:
                for code in error_codes(fold(keyword)):
                    self._codes.setdefault(code, []).append(gi)
        self._sides = np.array([self._topic_sides(t) for t in self.topics], dtype=np.int8).reshape(n, -1)
        self._phrasing_pairs: list[list[frozenset[str]]] = [[] for _ in self.topics]
        for gi, prepared in zip(groups, prepared_phrasings, strict=True):
            self._phrasing_pairs[gi].append(_pairs(prepared))
        self._pairs = [frozenset().union(*pairs) for pairs in self._phrasing_pairs]
        self._aspects = [
            lexicon.aspects_said(lexicon.canonicalize(fold(" ".join([*t.phrasings, *t.keywords, t.answer]))))
            for t in self.topics
        ]
        vocabulary = [*phrasings, *(k for t in self.topics for k in t.keywords), *lexicon.vocabulary]
        self.pinyin = PinyinIndex(vocabulary, background=[t.answer for t in self.topics], protected=lexicon.latin_terms)
        self._phrasing_vectors = self._answer_vectors = None
        if embedder is not None and n:
            self._phrasing_vectors = embedder.queries(phrasings)
            self._answer_vectors = embedder.passages([t.answer for t in self.topics])

    @property
    def mode(self) -> str:
        """ "full" with the embedding re-ranker, "lexical" without."""
        return "full" if self._phrasing_vectors is not None else "lexical"

    @property
    def phrasing_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The query embedding of every phrasing (topic by topic) and the index where each topic's block starts;
        None without the embedding model."""
        if self._phrasing_vectors is None:
            return None
        return self._phrasing_vectors, self._starts

    def prepare(self, text: str) -> list[str]:
        """The comparable units of a text."""
        return units(self.lexicon.canonicalize(fold(text)))

    def lexical_signals(self, text: str, prepared: list[str] | None = None) -> Signals:
        """Best-phrasing similarity, answer similarity and error-code hits for every topic."""
        prepared = self.prepare(text) if prepared is None else prepared
        bag = features(prepared)
        phrasing = self._phrasing_index.group_scores(bag)
        codes = np.zeros(len(self.topics), dtype=np.float32)
        for code in set(error_codes(fold(text))):
            for gi in self._codes.get(code, ()):
                codes[gi] = 1.0
        return Signals(
            phrasing=phrasing,
            domain=bool(codes.any()) or self.lexicon.is_domain("".join(prepared)),
            answer=self._answer_index.group_scores(bag),
            error_code=codes,
            conflict=self.conflicts("".join(prepared)),
        )

    def _topic_sides(self, topic: Topic) -> tuple[int, ...]:
        """The side a topic takes on each contrast: its keywords say it, else its question."""
        by_keywords = self.lexicon.sides(self.lexicon.canonicalize(fold(" ".join(topic.keywords))))
        by_question = self.lexicon.sides(self.lexicon.canonicalize(fold(topic.question)))
        return tuple(k or q for k, q in zip(by_keywords, by_question, strict=True))

    def conflicts(self, canonical: str) -> np.ndarray:
        """1 for each topic on the other side of a fact the canonicalised text states (本月 against 上月), else 0."""
        said = np.array(self.lexicon.sides(canonical), dtype=np.int8)
        if not said.any():
            return np.zeros(len(self.topics), dtype=np.float32)
        return ((self._sides * said) < 0).any(axis=1).astype(np.float32)

    def embedding_signals(self, text: str, signals: Signals) -> Signals:
        """Add the embedding similarities (best phrasing and answer), rescaled so 0.8 cosine is 0."""
        vector = self.embedder.query(text[:RERANK_MAX_CHARS])  # type: ignore[union-attr]
        best = np.maximum.reduceat(self._phrasing_vectors @ vector, self._starts)
        signals.embedding = (best - 0.8) / 0.2
        signals.passage = (self._answer_vectors @ vector - 0.8) / 0.2
        return signals

    def focus(self, text: str) -> str:
        """The part of a message that is matched: a short one whole, a long one's most informative clauses."""
        return excerpt(text, limit=EXCERPT_CHARS, lexicon=self.lexicon) if len(text) > EXCERPT_CHARS else text

    def match(self, text: str) -> MatchResult:
        """Rank the topics for a message and decide what to do with it."""
        text = self.pinyin.convert(cut(text))
        focus = self.focus(text)
        prepared = self.prepare(focus)
        if not self.topics or not prepared:
            return MatchResult("not_sure", 0.0, [])
        signals = self.lexical_signals(focus, prepared)
        lexical = self._decide(signals, self.config.lexical, self.config.lexical_policy)
        if self.mode == "lexical" or (lexical.outcome == "answer" and self._decisive(signals, lexical)):
            return self._checked(prepared, lexical, self.config.lexical_policy)
        if self.gate is not None and not self.gate.acquire():
            return lexical  # the re-ranker is busy: answer or clarify lexically rather than queue
        try:
            self.embedding_signals(focus, signals)
        finally:
            if self.gate is not None:
                self.gate.release()
        full = self._decide(signals, self.config.full, self.config.policy, reranked=True)
        return self._checked(prepared, full, self.config.policy)

    def _checked(self, prepared: list[str], result: MatchResult, policy: Policy) -> MatchResult:
        """An answer, unless the message is too generic to choose or asks about a side the topic does not speak of."""
        return self._unless_unaddressed(prepared, self._unless_generic(prepared, result, policy), policy)

    def _unless_unaddressed(self, prepared: list[str], result: MatchResult, policy: Policy) -> MatchResult:
        """An answer to a message that asks about a side of the subject (the accounting entry, how long to keep it, a
        penalty) the topic says nothing of becomes a choice: "抵扣联要装订吗" is not answered by the topic on a lost
        抵扣联."""
        if result.outcome != "answer":
            return result
        asked = self.lexicon.aspects_said("".join(prepared))
        if not asked or asked <= self._aspects[self.ids.index(result.candidates[0].topic)]:
            return result
        return self._as_choice(result, policy, "aspect")

    def _as_choice(self, result: MatchResult, policy: Policy, gate: Gate) -> MatchResult:
        """The result as a choice between the leading topics, decided by `gate`."""
        top = result.candidates[0].score
        choices = [c for c in result.candidates if c.score >= top - policy.clarify_band][: policy.max_choices]
        return replace(result, outcome="clarify", candidates=choices, gate=gate, threshold=None)

    def _unless_generic(self, prepared: list[str], result: MatchResult, policy: Policy) -> MatchResult:
        """An answer to a message that says nothing the two leading topics do not both say ("发票怎么作废" when
        several topics are about voiding) becomes a choice between the leading topics; not for a statement (pasted
        error text) nor when the message says all of one of the first topic's phrasings (it is that topic's own,
        general question: "开票失败怎么办")."""
        if result.outcome != "answer" or len(result.candidates) < 2:
            return result
        said = _pairs(prepared)
        if not said or len(said) > GENERIC_MAX_PAIRS or QUESTION_CHARS.isdisjoint(prepared):
            return result
        first, second = (self.ids.index(c.topic) for c in result.candidates[:2])
        if not said <= self._pairs[first] & self._pairs[second]:
            return result
        if any(pairs and pairs <= said for pairs in self._phrasing_pairs[first]):
            return result
        return self._as_choice(result, policy, "generic")

    def _decisive(self, signals: Signals, lexical: MatchResult) -> bool:
        """True when the lexical stage alone is sure enough to skip the embedding re-ranker: a unique error code, or
        a confident answer that no outside subject comes within the clarify band of (the re-ranker tells "how do I
        print it smaller" from a question on invoice formats better than shared words do)."""
        if np.count_nonzero(signals.error_code) == 1:
            return True
        policy = self.config.policy
        return lexical.confidence >= policy.fast_confidence and self.outside_lead(signals) >= policy.clarify_band

    def outside_lead(self, signals: Signals) -> float:
        """How far the best FAQ topic's lexical score leads the best outside subject's (inf without subjects)."""
        if not self.outside.any() or self.outside.all():
            return math.inf
        scores = signals.combine(self.config.lexical)
        return float(scores[~self.outside].max() - scores[self.outside].max())

    def _decide(self, signals: Signals, weights: Weights, policy: Policy, *, reranked: bool = False) -> MatchResult:
        scores = signals.combine(weights)
        order = np.argsort(-scores, kind="stable")
        top, margin = _top_two(scores)
        confidence = weights.confidence(top, margin, signals.domain)
        faq = order[~self.outside[order]][: max(policy.max_choices, 5)]
        candidates = [Candidate(self.ids[i], round(float(scores[i]), 4)) for i in faq]
        rounded, score, gap = round(confidence, 4), round(top, 4), round(margin, 4)
        gate: Gate
        if len(order) and self.outside[order[0]]:
            outside = self.ids[order[0]] if confidence >= policy.outside_at else None
            outcome: Outcome = "out_of_scope" if outside else "not_sure"
            return MatchResult(
                outcome, rounded, candidates, reranked, outside, score, gap, "outside_at", policy.outside_at
            )
        if confidence >= policy.answer_at and top >= policy.min_score:
            outcome, gate, threshold = "answer", "answer_at", policy.answer_at
        elif confidence >= policy.clarify_at:
            outcome = "clarify"
            candidates = [c for c in candidates if c.score >= top - policy.clarify_band][: policy.max_choices]
            below_min = confidence >= policy.answer_at
            gate, threshold = ("min_score", policy.min_score) if below_min else ("clarify_at", policy.clarify_at)
        else:
            outcome, gate, threshold = "not_sure", "clarify_at", policy.clarify_at
        return MatchResult(outcome, rounded, candidates, reranked, None, score, gap, gate, threshold)


def _pairs(prepared: list[str]) -> frozenset[str]:
    """Adjacent pairs of the content units of prepared text (function characters left out first, so "怎么红冲" and
    "红冲" say the same)."""
    content = [u for u in prepared if u not in FUNCTION_CHARS]
    return frozenset(a + b for a, b in itertools.pairwise(content))


def _top_two(scores: np.ndarray) -> tuple[float, float]:
    if len(scores) == 0:
        return 0.0, 0.0
    if len(scores) == 1:
        return float(scores[0]), float(scores[0])
    first, second = np.partition(scores, -2)[-2:][::-1]
    return float(first), float(first - second)
