"""Unanswered questions (clustered, each with one click to add it as an alternate, start a new FAQ, or dismiss) and
the guide list with validation status."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console.faq import faq_path, new_faq_link
from console.identity import Admin
from console.pages import BASE, audit, author, done, failed, int_param, page
from core.web import DbSession
from knowledge import service, unanswered
from knowledge.guides import GUIDE_DIR, Problem, check_guides, get_guides, parse_guide
from knowledge.live import get_live_knowledge
from knowledge.models import FaqEntry

router = APIRouter()
UNANSWERED_PATH = f"{BASE}/unanswered"
MAX_CLUSTERS = 100
MAX_LINK_TEXTS = 20  # wordings and keys a "new FAQ" link carries (a URL stays well under 8 KB)
MAX_LINK_KEYS = 30


# --- unanswered ----------------------------------------------------------------------------------------------


@router.get("/unanswered", response_class=Response)
def unanswered_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """The clusters of unanswered questions of the last `days`, biggest first, each with its nearest FAQ topics."""
    days = int_param(request.query_params.get("days"), 30, 1, 365)
    snapshot = get_live_knowledge().current(db_session=db_session)
    clusters = unanswered.clusters(
        db_session=db_session, days=days, limit=MAX_CLUSTERS, matcher=snapshot.matcher, version=snapshot.version
    )
    entries = {e.id: e for e in service.get_all(db_session=db_session)}
    links = {}
    for item in clusters:
        guess = entries.get(item.suggestion.topic) if item.suggestion else None
        others = item.texts[1:MAX_LINK_TEXTS]
        links[item.id] = new_faq_link(item.label, others, item.keys[:MAX_LINK_KEYS], guess.category if guess else "")
    context = {
        "clusters": clusters,
        "days": days,
        "entries": entries,
        "new_links": links,
        "turns": sum(c.count for c in clusters),
        "by_meaning": snapshot.matcher.mode == "full",
        "same_pct": round(unanswered.SAME_QUESTION * 100),
        "new_pct": round(unanswered.NEW_QUESTION * 100),
    }
    return page(request, db_session, "admin_unanswered.html", context)


@router.post("/unanswered/alternate", response_class=Response)
def add_alternate(
    request: Request,
    user: Admin,
    db_session: DbSession,
    topic: Annotated[str, Form()] = "",
    text: Annotated[list[str] | None, Form()] = None,
    key: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Add the chosen wordings (a whole cluster's, or those ticked) as alternates of a topic (a new version; the bot
    answers them at once)."""
    topic = topic.strip().split(" ", 1)[0]  # the picker may carry "id 问题"
    texts = [t.strip()[:500] for t in text or [] if t.strip()][: unanswered.MAX_TEXTS]
    if not texts:
        return failed(request, db_session, "请至少勾选一个问法", UNANSWERED_PATH)
    try:
        entry, changed = unanswered.add_as_alternate(
            db_session=db_session, topic=topic, texts=texts, keys=(key or [])[:500], author=author(user)
        )
    except LookupError:
        return failed(request, db_session, f"FAQ 条目「{topic}」不存在", UNANSWERED_PATH)
    except ValueError as exc:
        return failed(request, db_session, f"无法添加：{exc}", UNANSWERED_PATH)
    audit(
        db_session,
        user,
        "unanswered_alternate",
        after={"faq_id": entry.id, "version": entry.version, "alternates": texts},
    )
    response = done(
        request,
        db_session,
        f"已将 {len(texts)} 个问法加入「{entry.id}」（v{entry.version}），智能助手已立即生效"
        if changed
        else f"这些问法已在「{entry.id}」中，已从列表移除",
        UNANSWERED_PATH,
    )
    get_live_knowledge().refresh()
    return response


@router.post("/unanswered/dismiss", response_class=Response)
def dismiss(
    request: Request,
    user: Admin,
    db_session: DbSession,
    key: Annotated[list[str] | None, Form()] = None,
    label: Annotated[str, Form()] = "",
) -> Response:
    """Hide questions that need no FAQ; asked again later, they come back."""
    keys = (key or [])[:500]
    if not keys:
        return failed(request, db_session, "没有要忽略的问题", UNANSWERED_PATH)
    unanswered.dismiss(db_session=db_session, keys=keys, author=author(user))
    audit(db_session, user, "unanswered_dismissed", after={"question": label[:200], "keys": len(keys)})
    return done(request, db_session, f"已忽略「{label[:50]}」等 {len(keys)} 种问法", UNANSWERED_PATH)


# --- guides --------------------------------------------------------------------------------------------------


@dataclass
class GuideStatus:
    """One guide file: what it is, whether it is valid, and whether its FAQ topic exists and is enabled."""

    id: str
    file: str
    title: str = ""
    steps: int = 0
    errors: int = 0
    problems: list[Problem] = field(default_factory=list)
    topic: str = "missing"  # ok, disabled or missing
    loaded: bool = False  # in the running bot (guides are read at start)

    @property
    def valid(self) -> bool:
        """Whether the file passed validation."""
        return not self.problems


def guide_statuses(directory: Path, entries: dict[str, FaqEntry]) -> list[GuideStatus]:
    """Every guide file in a directory with its validation problems (check_guides) and its topic's state."""
    problems = check_guides(directory)
    loaded = set(get_guides()) if directory == GUIDE_DIR else set()
    statuses = []
    for name in sorted(problems):
        path = directory / f"{name}.yaml"
        status = GuideStatus(id=name, file=path.name, problems=problems[name], loaded=name in loaded)
        status.title, status.steps, status.errors = _outline(path)
        entry = entries.get(name)
        status.topic = "missing" if entry is None else "ok" if entry.enabled else "disabled"
        statuses.append(status)
    return statuses


def _outline(path: Path) -> tuple[str, int, int]:
    """A guide file's title, number of steps and of covered error messages, as far as it can be read."""
    try:
        text = path.read_text(encoding="utf-8")
        guide, _ = parse_guide(text, file=path.name)
        if guide is not None:
            return guide.title, len(guide.steps), len(guide.errors)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "", 0, 0
    if not isinstance(data, dict):
        return "", 0, 0
    steps, errors = data.get("steps"), data.get("errors")
    return (
        str(data.get("title") or ""),
        len(steps) if isinstance(steps, dict) else 0,
        len(errors) if isinstance(errors, list) else 0,
    )


def guides_dir() -> Path:
    """Where the guides are read from (the tests point this elsewhere)."""
    return GUIDE_DIR


@router.get("/guides", response_class=Response)
def guides_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Every guide with its validation status and problems."""
    entries = {e.id: e for e in service.get_all(db_session=db_session)}
    statuses = guide_statuses(guides_dir(), entries)
    context = {
        "guides": statuses,
        "invalid": sum(1 for s in statuses if not s.valid),
        "faq_path": faq_path,
    }
    return page(request, db_session, "admin_guides.html", context)
