"""Unanswered questions: what the bot could not answer, clustered by similarity, and what admins did about them.

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

Clustering is greedy ("leader") clustering: the distinct keys, most frequent first, each join the group of an earlier
leading key at least UNANSWERED_SIMILARITY similar to it (rapidfuzz ratio, 0-100), or lead a new group. Comparisons
run in batches in rapidfuzz's C code, so ten thousand turns take about a second.

Each cluster's nearest FAQ entry (the matcher's guess at its leading question, on the matcher's bounded excerpt of
it) is computed once per cluster and knowledge version and cached for UNANSWERED_SUGGEST_SECONDS; a page computes
suggestions for at most UNANSWERED_BUDGET_SECONDS, and clusters left over show without one until a later view.
"""

import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz, process
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.conversation.models import ConversationTurn
from core.limits import KEY_SCAN_CHARS, MATCH_MAX_CHARS
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
MAX_EXAMPLES = 5
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
class Suggestion:
    """The matcher's best guess at the topic a question belongs to."""

    topic: str
    score: float
    outcome: str
    confidence: float


@dataclass
class Cluster:
    """Similar unanswered questions: how often, by how many identities, examples, when, and the best-guess topic."""

    label: str  # the most frequent wording of the leading question
    keys: list[str]
    count: int = 0
    identities: int = 0
    examples: list[str] = field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    fallbacks: int = 0
    clarifies: int = 0
    out_of_scope: int = 0
    suggestion: Suggestion | None = None

    @property
    def id(self) -> str:
        """A stable handle for the page: the leading key."""
        return self.keys[0]


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
    """Group unanswered turns by similarity of their keys; biggest cluster first (then the most recent)."""
    threshold = get_settings().unanswered_similarity if threshold is None else threshold
    by_key: dict[str, list[UnansweredTurn]] = {}
    for turn in turns:
        by_key.setdefault(turn.key, []).append(turn)
    keys = sorted(by_key, key=lambda k: (-len(by_key[k]), -max(t.created_at for t in by_key[k]).timestamp(), k))
    members = _leaders(keys, threshold)
    clusters = [_summarise(group, by_key) for group in members]
    clusters.sort(key=lambda c: (-c.count, -(c.last_seen.timestamp() if c.last_seen else 0), c.label))
    return clusters


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
    leading = Counter(shown[t.id] for t in by_key[keys[0]])
    intents = Counter(t.intent for t in turns)
    return Cluster(
        label=leading.most_common(1)[0][0],
        keys=keys,
        count=len(turns),
        identities=len({(t.channel, t.user_id) for t in turns}),
        examples=[text for text, _ in wordings.most_common(MAX_EXAMPLES)],
        first_seen=min(t.created_at for t in turns),
        last_seen=max(t.created_at for t in turns),
        fallbacks=intents[FALLBACK],
        clarifies=intents[CLARIFY],
        out_of_scope=intents[OUT_OF_SCOPE],
    )


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
    """The unanswered questions of the last `days` (UNANSWERED_DAYS), clustered; with a matcher, the returned
    clusters carry the best-guess topic (cached per cluster and knowledge `version`; those not computed within
    `budget_seconds`, UNANSWERED_BUDGET_SECONDS, have none)."""
    now = utc(now)
    settings = get_settings()
    days = settings.unanswered_days if days is None else days
    found = cluster(find_turns(db_session=db_session, since=now - timedelta(days=days), now=now))
    found = found[:limit] if limit is not None else found
    if matcher is not None:
        budget = settings.unanswered_budget_seconds if budget_seconds is None else budget_seconds
        add_suggestions(found, matcher=matcher, version=version, budget_seconds=budget)
    return found


class SuggestionCache:
    """Suggestions by (cluster id, knowledge version), each kept for `ttl` seconds."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._items: dict[tuple[str, Hashable], tuple[float, Suggestion | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, Hashable], *, now: float) -> tuple[bool, Suggestion | None]:
        """(True, suggestion) when cached and fresh, else (False, None)."""
        with self._lock:
            item = self._items.get(key)
        if item is None or item[0] <= now:
            return False, None
        return True, item[1]

    def put(self, key: tuple[str, Hashable], suggestion: Suggestion | None, *, now: float, ttl: float) -> None:
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
    """Set each cluster's suggestion from the cache or the matcher (one match per cluster, on its leading question),
        computing for at most `budget_seconds`; return how many clusters were left without one. Without a `version`
    nothing is cached."""
    ttl = get_settings().unanswered_suggest_seconds
    started = time.monotonic()
    left = 0
    for item in items:
        key = (item.id, version)
        now = time.monotonic()
        cached, suggestion = SUGGESTIONS.get(key, now=now) if version is not None else (False, None)
        if not cached:
            if now - started >= budget_seconds:
                left += 1
                continue
            suggestion = suggest(matcher, item.label)
            if version is not None:
                SUGGESTIONS.put(key, suggestion, now=time.monotonic(), ttl=ttl)
        item.suggestion = suggestion
    return left


def suggest(matcher: Matcher, text: str) -> Suggestion | None:
    """The matcher's top candidate for a text (None when it has none); the matcher reads a bounded excerpt."""
    result = matcher.match(text)
    if not result.candidates:
        return None
    top = result.candidates[0]
    return Suggestion(top.topic, top.score, result.outcome, result.confidence)


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
    """Add questions as other phrasings of a topic (a new FAQ version) and mark them handled; LookupError when the
    topic does not exist. The caller invalidates the live knowledge after committing."""
    entry = service.get(db_session=db_session, faq_id=topic)
    if entry is None:
        raise LookupError(f"no FAQ entry {topic!r}")
    added = [clean(t) for t in texts if text_key(t)]
    faq_in = FaqIn.model_validate(
        {"id": entry.id, **{k: getattr(entry, k) for k in service.EDITABLE}, "alternates": [*entry.alternates, *added]}
    )
    saved, changed = service.upsert(
        db_session=db_session, faq_in=faq_in, author=author, note=f"未答问题加为相似问法（{len(added)} 条）"
    )
    handled = [*keys, *(text_key(t) for t in added)]
    resolve(db_session=db_session, keys=handled, action=ALTERNATE, author=author, topic=topic, now=now)
    return saved, changed
