"""Unanswered questions: what the bot could not answer, grouped by meaning, and what admins did about them.

A recorded conversation turn is *unanswered* when
  - its intent is "fallback" and it has readable text (the bot said it cannot help), or
  - its intent is "out_of_scope" (the bot said the subject is outside what it covers), or
  - its intent is "clarify" (the bot offered topics to choose from) and it went nowhere: the same chat identity's
    next turn within UNANSWERED_CLARIFY_MINUTES is not an "answer" or "guide" turn (the merchant picked
    "都不是，转人工", asked something the bot could not answer either, ...), or there is no next turn within that
    time and that time has passed (the merchant left). A clarify turn younger than that with no next turn yet is
    undecided and left out.
Turns are compared by their text key (folded, synonyms made canonical, fillers and punctuation dropped). A key an
admin has handled (dismissed, added as an alternate, made a new FAQ) hides the turns with that key up to that
moment; the same question asked afterwards shows up again.

Grouping by meaning (the live matcher has the embedding model): each distinct key, most frequent first, is embedded
once (its most frequent wording, cut as the matcher cuts it; vectors come from the embedder's cache, new ones in
batches) for at most UNANSWERED_BUDGET_SECONDS and UNANSWERED_EMBED_KEYS keys. Vectors are centred on the mean of
the FAQ phrasings' vectors (e5 vectors of any two invoice questions are ~0.9 alike; centring removes what they all
share) and grouped by average-linkage agglomerative clustering until no two groups are UNANSWERED_MEANING_SIMILARITY
alike (nearest-neighbour chain: O(n^2) time and memory in n keys). Keys left over group by wording, as below.
Each group's nearest FAQ topics are the three with the highest similarity of the group's centroid (turn-weighted) to
any of the topic's phrasings, on the same centred scale, 0-1: see SAME_QUESTION / NEW_QUESTION.

Grouping by wording (MATCHER_EMBEDDINGS=false, or the analytics summary): greedy ("leader") clustering: the distinct
keys, most frequent first, each join the group of an earlier leading key at least UNANSWERED_SIMILARITY similar to it
(rapidfuzz ratio, 0-100), or lead a new group. Each group's nearest topics are the matcher's candidates for its
leading question (no similarity shown), cached per cluster and knowledge version for UNANSWERED_SUGGEST_SECONDS; a
page computes them for at most UNANSWERED_BUDGET_SECONDS, and clusters left over show without until a later view.
"""

import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz, process
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.conversation.models import ConversationTurn
from core.limits import KEY_SCAN_CHARS, MATCH_MAX_CHARS, RERANK_MAX_CHARS
from core.settings import get_settings
from core.text import Lexicon, clean, fold, units
from knowledge import service
from knowledge.matcher import Matcher, load_lexicon
from knowledge.models import FaqEntry, UnansweredResolution
from knowledge.outside import OUT_OF_SCOPE
from knowledge.schemas import FaqIn

FALLBACK = "fallback"
CLARIFY = "clarify"
RESOLVING = frozenset({"answer", "guide"})  # a next turn with one of these intents took up the clarify choice
MAX_KEY_CHARS = 200
BATCH = 512
MAX_EXAMPLES = 3
MAX_TEXTS = 50  # wordings a cluster offers to add as alternates at once
NEAREST = 3
EMBED_BATCH = 8  # small batches: the time budget is checked between them (a long question takes ~0.1-0.3 s)
# The page's guide to the similarity of a cluster to a topic (centred cosine, see the module docstring), calibrated
# on tests/knowledge/unanswered_cases.py: 8 of 10 rewordings of shipped FAQ questions score >= 0.70 with their topic
# (median 0.77, lowest 0.59); the centroids of 10 groups of questions the FAQ does not answer score < 0.56 with
# their nearest topic (median 0.40, highest 0.553). In between: an admin's judgement.
SAME_QUESTION = 0.70
NEW_QUESTION = 0.60
DISMISSED, ALTERNATE, NEW_FAQ = "dismissed", "alternate", "faq"


@dataclass(frozen=True)
class UnansweredTurn:
    """A turn the bot did not answer."""

    id: int
    channel: str
    user_id: str
    text: str
    intent: str
    created_at: datetime
    key: str


@dataclass(frozen=True)
class Nearest:
    """An FAQ topic near a cluster: its similarity (0-1, by meaning) or None (the matcher's guess by wording)."""

    topic: str
    similarity: float | None = None


@dataclass
class Cluster:
    """Unanswered questions of one need: how often, by how many identities, wordings, when, and the nearest topics."""

    label: str  # the most frequent wording of the leading question
    keys: list[str]
    count: int = 0
    identities: int = 0
    examples: list[str] = field(default_factory=list)  # the most frequent wordings
    texts: list[str] = field(default_factory=list)  # one wording per key, the most frequent keys first
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    fallbacks: int = 0
    clarifies: int = 0
    out_of_scope: int = 0
    by_meaning: bool = False
    nearest: list[Nearest] = field(default_factory=list)

    @property
    def id(self) -> str:
        """A stable handle for the page: the leading key."""
        return self.keys[0]

    @property
    def suggestion(self) -> Nearest | None:
        """The nearest topic, if any."""
        return self.nearest[0] if self.nearest else None


@lru_cache
def _lexicon() -> Lexicon:
    return load_lexicon()


def text_key(text: str) -> str:
    """The comparable form of a question: folded, synonyms canonical, fillers and punctuation gone."""
    return "".join(units(_lexicon().canonicalize(fold(text[:KEY_SCAN_CHARS]))))[:MAX_KEY_CHARS]


def find_turns(
    *, db_session: Session, since: datetime, now: datetime | None = None, clarify_minutes: float | None = None
) -> list[UnansweredTurn]:
    """The unanswered turns since a moment (see the module docstring), oldest first, without handled ones."""
    now = utc(now)
    minutes = get_settings().unanswered_clarify_minutes if clarify_minutes is None else clarify_minutes
    window = timedelta(minutes=minutes)
    t = ConversationTurn
    identity = (t.channel, t.user_id)
    following = {"partition_by": identity, "order_by": t.id}
    ranked = (
        select(
            t.id,
            t.channel,
            t.user_id,
            t.text,
            t.intent,
            t.created_at,
            func.lead(t.intent).over(**following).label("next_intent"),
            func.lead(t.created_at, type_=t.created_at.type).over(**following).label("next_at"),
        )
        .where(t.created_at >= utc(since))
        .subquery()
    )
    query = select(ranked).where(ranked.c.intent.in_((FALLBACK, CLARIFY, OUT_OF_SCOPE))).order_by(ranked.c.id)
    handled = _handled(db_session)
    found = []
    for row in db_session.execute(query):
        created = utc(row.created_at)
        if row.intent == CLARIFY and not _clarify_went_nowhere(row, created, now, window):
            continue
        key = text_key(row.text)
        if not key or (key in handled and created <= handled[key]):
            continue
        found.append(UnansweredTurn(row.id, row.channel, row.user_id, row.text, row.intent, created, key))
    return found


def _clarify_went_nowhere(row, created: datetime, now: datetime, window: timedelta) -> bool:
    if row.next_at is not None and utc(row.next_at) - created <= window:
        return row.next_intent not in RESOLVING
    return now - created >= window


def _handled(db_session: Session) -> dict[str, datetime]:
    rows = db_session.execute(select(UnansweredResolution.text_key, UnansweredResolution.created_at))
    return {key: utc(at) for key, at in rows}


def cluster(turns: Sequence[UnansweredTurn], *, threshold: float | None = None) -> list[Cluster]:
    """Group unanswered turns by the wording of their keys; biggest cluster first (then the most recent)."""
    threshold = get_settings().unanswered_similarity if threshold is None else threshold
    by_key, keys = _by_key(turns)
    return _ordered([_summarise(group, by_key) for group in _leaders(keys, threshold)])


def _leaders(keys: list[str], threshold: float) -> list[list[str]]:
    """Leader clustering of keys given most important first: each joins an earlier leader's group (the most similar
    one of earlier batches, else the first of its own batch) at or above the threshold, else leads a new group."""
    cutoff = int(np.ceil(threshold))
    leaders: list[str] = []
    groups: list[list[str]] = []
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        assigned = np.full(len(batch), -1, dtype=np.int64)
        if leaders:
            scores = process.cdist(batch, leaders, scorer=fuzz.ratio, dtype=np.uint8, score_cutoff=cutoff, workers=-1)
            best = scores.argmax(axis=1)
            hit = scores[np.arange(len(batch)), best] >= cutoff
            assigned[hit] = best[hit]
        inner = process.cdist(batch, batch, scorer=fuzz.ratio, dtype=np.uint8, score_cutoff=cutoff, workers=-1)
        for i, key in enumerate(batch):
            if assigned[i] >= 0:
                groups[assigned[i]].append(key)
                continue
            leader = len(leaders)
            leaders.append(key)
            groups.append([key])
            assigned[i] = leader
            later = np.flatnonzero((inner[i] >= cutoff) & (assigned == -1))
            later = later[later > i]
            assigned[later] = leader  # they join the group in their turn, keeping the order
    return groups


def _summarise(keys: list[str], by_key: dict[str, list[UnansweredTurn]]) -> Cluster:
    turns = [t for k in keys for t in by_key[k]]
    shown = {t.id: clean(t.text[:MATCH_MAX_CHARS]) for t in turns}  # what the page shows of a very long message
    wordings = Counter(shown[t.id] for t in turns)
    intents = Counter(t.intent for t in turns)
    texts = [_wording(by_key[k]) for k in keys[:MAX_TEXTS]]
    return Cluster(
        label=texts[0],
        keys=keys,
        count=len(turns),
        identities=len({(t.channel, t.user_id) for t in turns}),
        examples=[text for text, _ in wordings.most_common(MAX_EXAMPLES)],
        texts=texts,
        first_seen=min(t.created_at for t in turns),
        last_seen=max(t.created_at for t in turns),
        fallbacks=intents[FALLBACK],
        clarifies=intents[CLARIFY],
        out_of_scope=intents[OUT_OF_SCOPE],
    )


def _wording(turns: Sequence[UnansweredTurn]) -> str:
    """The most frequent wording among turns of one key, as the page shows it (a very long message cut)."""
    return Counter(clean(t.text[:MATCH_MAX_CHARS]) for t in turns).most_common(1)[0][0]


def _by_key(turns: Sequence[UnansweredTurn]) -> tuple[dict[str, list[UnansweredTurn]], list[str]]:
    """Turns by key, and the keys most frequent first (then the most recent)."""
    by_key: dict[str, list[UnansweredTurn]] = {}
    for turn in turns:
        by_key.setdefault(turn.key, []).append(turn)
    keys = sorted(by_key, key=lambda k: (-len(by_key[k]), -max(t.created_at for t in by_key[k]).timestamp(), k))
    return by_key, keys


def _ordered(found: list[Cluster]) -> list[Cluster]:
    found.sort(key=lambda c: (-c.count, -(c.last_seen.timestamp() if c.last_seen else 0), c.label))
    return found


# --- by meaning ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeaningSpace:
    """The FAQ phrasings' embeddings, centred and normalised, and how to embed a question in the same space."""

    embed: Callable[[list[str]], np.ndarray]  # query vectors of texts (the embedder's cached `queries`)
    focus: Callable[[str], str]  # the part of a message the matcher reads
    centre: np.ndarray
    phrasings: np.ndarray  # centred unit vectors, topic by topic
    starts: np.ndarray  # where each topic's phrasings start
    topics: list[str]
    outside: np.ndarray  # True for subjects the bot does not cover (never suggested)

    @classmethod
    def of(cls, matcher: Matcher | None) -> "MeaningSpace | None":
        """The space of a matcher with the embedding model; None without it (grouping is then by wording)."""
        vectors = matcher.phrasing_vectors if matcher is not None else None
        if vectors is None or matcher is None or matcher.embedder is None:
            return None
        phrasings, starts = vectors
        own = np.repeat(~matcher.outside, np.diff(np.r_[starts, len(phrasings)]))
        centre = phrasings[own].mean(axis=0) if own.any() else phrasings.mean(axis=0)
        return cls(
            matcher.embedder.queries,
            matcher.focus,
            centre,
            _centred(phrasings, centre),
            starts,
            matcher.ids,
            matcher.outside,
        )

    def vectors(self, texts: list[str]) -> np.ndarray:
        """Centred unit vectors of questions, each cut as the matcher cuts it."""
        return _centred(self.embed([self.focus(t)[:RERANK_MAX_CHARS] for t in texts]), self.centre)

    def nearest(self, vector: np.ndarray, limit: int = NEAREST) -> list[Nearest]:
        """The FAQ topics most similar to a centred vector: best phrasing's cosine, clipped to 0-1."""
        best = np.maximum.reduceat(self.phrasings @ vector, self.starts)
        best[self.outside] = -np.inf
        top = np.argsort(-best, kind="stable")[:limit]
        return [Nearest(self.topics[i], float(np.clip(best[i], 0.0, 1.0))) for i in top if np.isfinite(best[i])]


def _centred(vectors: np.ndarray, centre: np.ndarray) -> np.ndarray:
    shifted = np.asarray(vectors, dtype=np.float32) - centre
    norms = np.linalg.norm(shifted, axis=-1, keepdims=True)
    return shifted / np.where(norms > 0, norms, 1.0)


def cluster_by_meaning(
    turns: Sequence[UnansweredTurn],
    *,
    space: MeaningSpace,
    threshold: float | None = None,
    budget_seconds: float | None = None,
    max_keys: int | None = None,
) -> list[Cluster]:
    """Group unanswered turns by the meaning of their keys (those embedded within the budget; the rest by wording),
    each group with its nearest FAQ topics; biggest first (then the most recent)."""
    settings = get_settings()
    threshold = settings.unanswered_meaning_similarity if threshold is None else threshold
    budget = settings.unanswered_budget_seconds if budget_seconds is None else budget_seconds
    max_keys = settings.unanswered_embed_keys if max_keys is None else max_keys
    by_key, keys = _by_key(turns)
    started = time.monotonic()
    parts: list[np.ndarray] = []
    done = 0
    while done < min(len(keys), max_keys) and time.monotonic() - started < budget:
        batch = keys[done : min(done + EMBED_BATCH, max_keys)]
        parts.append(space.vectors([_wording(by_key[k]) for k in batch]))
        done += len(batch)
    found = []
    if done:
        vectors = np.concatenate(parts)
        for group in average_linkage(vectors, threshold):
            item = _summarise([keys[i] for i in group], by_key)
            weights = np.array([len(by_key[keys[i]]) for i in group], dtype=np.float32)
            centroid = _centred(weights @ vectors[group], np.zeros(vectors.shape[1], np.float32))
            item.by_meaning, item.nearest = True, space.nearest(centroid)
            found.append(item)
    rest = keys[done:]
    threshold_wording = settings.unanswered_similarity
    found.extend(_summarise(group, by_key) for group in _leaders(rest, threshold_wording))
    return _ordered(found)


def average_linkage(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Groups of row indices (each ascending) of unit vectors: average-linkage agglomerative clustering stopped when
    no two groups' mean cosine reaches the threshold (nearest-neighbour chain, O(n^2))."""
    n = len(vectors)
    sims = (vectors @ vectors.T).astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    size = np.ones(n)
    active = np.ones(n, dtype=bool)
    members = [[i] for i in range(n)]
    final: list[list[int]] = []
    chain: list[int] = []
    while chain or active.any():
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        a = chain[-1]
        row = np.where(active, sims[a], -np.inf)
        b = int(row.argmax())
        if row[b] < threshold:  # nothing reaches it, and no merge can bring anything closer (average linkage)
            active[a] = False
            final.append(sorted(members[a]))
            chain.pop()
            continue
        if len(chain) > 1 and row[chain[-2]] >= row[b]:
            b = chain[-2]
        if len(chain) > 1 and b == chain[-2]:  # mutual nearest neighbours: merge b into a
            del chain[-2:]
            merged = (size[a] * sims[a] + size[b] * sims[b]) / (size[a] + size[b])
            sims[a, :] = merged
            sims[:, a] = merged
            sims[a, a] = -np.inf
            active[b] = False
            size[a] += size[b]
            members[a] += members[b]
        else:
            chain.append(b)
    return sorted(final)


# --- the page ---------------------------------------------------------------------------------------------------


def clusters(
    *,
    db_session: Session,
    days: float | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    matcher: Matcher | None = None,
    version: Hashable = None,
    budget_seconds: float | None = None,
) -> list[Cluster]:
    """The unanswered questions of the last `days` (UNANSWERED_DAYS), grouped by meaning when the matcher has the
    embedding model (else by wording), each with its nearest topics: by meaning, computed with the groups; by
    wording, the matcher's guess (cached per cluster and knowledge `version`; those not computed within
    `budget_seconds`, UNANSWERED_BUDGET_SECONDS, have none)."""
    now = utc(now)
    settings = get_settings()
    days = settings.unanswered_days if days is None else days
    budget = settings.unanswered_budget_seconds if budget_seconds is None else budget_seconds
    turns = find_turns(db_session=db_session, since=now - timedelta(days=days), now=now)
    started = time.monotonic()
    space = MeaningSpace.of(matcher)
    found = cluster(turns) if space is None else cluster_by_meaning(turns, space=space, budget_seconds=budget)
    found = found[:limit] if limit is not None else found
    if matcher is not None:  # groups by wording (all of them, or those left over) get the matcher's guess
        by_wording = [c for c in found if not c.by_meaning]
        left = budget - (time.monotonic() - started) if space is not None else budget  # one budget for the page
        add_suggestions(by_wording, matcher=matcher, version=version, budget_seconds=max(left, 0.0))
    return found


class SuggestionCache:
    """Suggestions by (cluster id, knowledge version), each kept for `ttl` seconds."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._items: dict[tuple[str, Hashable], tuple[float, list[Nearest]]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, Hashable], *, now: float) -> tuple[bool, list[Nearest]]:
        """(True, suggestions) when cached and fresh, else (False, [])."""
        with self._lock:
            item = self._items.get(key)
        if item is None or item[0] <= now:
            return False, []
        return True, item[1]

    def put(self, key: tuple[str, Hashable], suggestion: list[Nearest], *, now: float, ttl: float) -> None:
        """Remember a suggestion (dropping expired ones when full)."""
        with self._lock:
            if len(self._items) >= self.MAX_ENTRIES:
                self._items = {k: v for k, v in self._items.items() if v[0] > now}
                if len(self._items) >= self.MAX_ENTRIES:
                    self._items.clear()
            self._items[key] = (now + ttl, suggestion)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()


SUGGESTIONS = SuggestionCache()


def add_suggestions(
    items: Sequence[Cluster], *, matcher: Matcher, version: Hashable = None, budget_seconds: float
) -> int:
    """Set each cluster's nearest topics from the cache or the matcher (one match per cluster, on its leading
    question), computing for at most `budget_seconds`; return how many clusters were left without. Without a
    `version` nothing is cached."""
    ttl = get_settings().unanswered_suggest_seconds
    started = time.monotonic()
    left = 0
    for item in items:
        key = (item.id, version)
        now = time.monotonic()
        cached, nearest = SUGGESTIONS.get(key, now=now) if version is not None else (False, [])
        if not cached:
            if now - started >= budget_seconds:
                left += 1
                continue
            nearest = suggest(matcher, item.label)
            if version is not None:
                SUGGESTIONS.put(key, nearest, now=time.monotonic(), ttl=ttl)
        item.nearest = nearest
    return left


def suggest(matcher: Matcher, text: str) -> list[Nearest]:
    """The matcher's top FAQ candidates for a text (subjects it does not cover left out); it reads a bounded
    excerpt."""
    outside = {topic for topic, out in zip(matcher.ids, matcher.outside, strict=True) if out}
    candidates = [c.topic for c in matcher.match(text).candidates if c.topic not in outside]
    return [Nearest(topic) for topic in candidates[:NEAREST]]


def find_cluster(items: Iterable[Cluster], cluster_id: str) -> Cluster | None:
    """The cluster with this id (its leading key)."""
    return next((c for c in items if c.id == cluster_id), None)


# --- what admins do about them --------------------------------------------------------------------------------


def resolve(
    *,
    db_session: Session,
    keys: Iterable[str],
    action: str,
    author: str,
    topic: str | None = None,
    now: datetime | None = None,
) -> int:
    """Mark text keys handled now (their earlier turns leave the list); return how many keys were marked."""
    now = utc(now)
    count = 0
    for key in dict.fromkeys(k[:MAX_KEY_CHARS] for k in keys if k):
        row = db_session.get(UnansweredResolution, key)
        if row is None:
            row = UnansweredResolution(text_key=key)
            db_session.add(row)
        row.action, row.topic, row.author, row.created_at = action, topic, author[:64], now
        count += 1
    db_session.flush()
    return count


def dismiss(*, db_session: Session, keys: Iterable[str], author: str, now: datetime | None = None) -> int:
    """Hide questions that need no FAQ (chit-chat, spam)."""
    return resolve(db_session=db_session, keys=keys, action=DISMISSED, author=author, now=now)


def add_as_alternate(
    *,
    db_session: Session,
    topic: str,
    texts: Iterable[str],
    keys: Iterable[str] = (),
    author: str,
    now: datetime | None = None,
) -> tuple[FaqEntry, bool]:
    """Add questions as other phrasings of a topic (a new FAQ version; wordings of one question, or of one it
    already has, once) and mark them handled; LookupError when the topic does not exist. The caller invalidates
    the live knowledge after committing."""
    texts = list(texts)
    entry = service.get(db_session=db_session, faq_id=topic)
    if entry is None:
        raise LookupError(f"no FAQ entry {topic!r}")
    known = {text_key(p) for p in (entry.question, *entry.alternates)}
    fresh: dict[str, str] = {}  # by key: one wording per question, none the entry already has
    for text in texts:
        key = text_key(text)
        if key and key not in known:
            fresh.setdefault(key, clean(text))
    added = list(fresh.values())
    faq_in = FaqIn.model_validate(
        {"id": entry.id, **{k: getattr(entry, k) for k in service.EDITABLE}, "alternates": [*entry.alternates, *added]}
    )
    saved, changed = service.upsert(
        db_session=db_session, faq_in=faq_in, author=author, note=f"未答问题加为相似问法（{len(added)} 条）"
    )
    handled = [*keys, *(text_key(t) for t in texts)]
    resolve(db_session=db_session, keys=handled, action=ALTERNATE, author=author, topic=topic, now=now)
    return saved, changed
