"""FAQ editor pages: list and filter, create and edit (each save a version), enable/disable, delete, rename a
category, version history with field diffs, and rollback."""

import re
from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from console.errors import not_found
from console.identity import Admin
from console.pages import BASE, audit, author, author_names, done, failed, page
from console.trial import OUTCOME_LABELS
from core.web import DbSession, RowId
from knowledge import service, unanswered, versions
from knowledge.guides import get_guides
from knowledge.live import get_live_knowledge
from knowledge.models import FaqEntry
from knowledge.schemas import FaqIn
from ticketing.models import StaffUser

router = APIRouter()
FAQ_PATH = f"{BASE}/faq"
LIST_SEPARATORS = re.compile(r"[\n\r]+")
KEYWORD_SEPARATORS = re.compile(r"[\n\r,，、;；]+")
ERROR_TEXT = {
    "string_too_short": "至少 {min_length} 个字",
    "string_too_long": "最多 {max_length} 个字",
    "missing": "不能为空",
}
FIELD_NAMES = {"id": "编号", **versions.FIELD_LABELS}


def faq_path(faq_id: str) -> str:
    """An entry's editor."""
    return f"{FAQ_PATH}/{faq_id}"


def _lines(text: str, pattern: re.Pattern[str] = LIST_SEPARATORS) -> list[str]:
    return [part.strip() for part in pattern.split(text or "") if part.strip()]


def _errors(exc: ValidationError) -> list[str]:
    """Validation errors in Chinese, one per field."""
    messages = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error.get("loc") else ""
        if field == "id" and error["type"] == "value_error":
            text = "须以小写字母开头，只含小写字母、数字和下划线，2-64 位"
        else:
            text = ERROR_TEXT.get(error["type"], error["msg"]).format(**(error.get("ctx") or {}))
        messages.append(f"{FIELD_NAMES.get(field, field)}：{text}")
    return messages


def _changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[dict, dict]:
    """The changed fields' values before and after, for the audit log."""
    fields = [c.field for c in versions.diff(before, after)]
    return {f: (before or {}).get(f) for f in fields}, {f: (after or {}).get(f) for f in fields}


def _saved(request: Request, db_session: Session, text: str, back: str) -> Response:
    """Commit an FAQ write, make the bot use it at once, and go back."""
    response = done(request, db_session, text, back)
    get_live_knowledge().refresh()
    return response


# --- list ----------------------------------------------------------------------------------------------------


@router.get("/faq", response_class=Response)
def faq_list(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Every entry, filtered by words, category and state, with the categories and their counts."""
    params = request.query_params
    search = (params.get("q") or "").strip()[:100]
    category = (params.get("category") or "").strip()[:64]
    state = params.get("state") or ""
    entries = service.get_all(db_session=db_session)
    counts = Counter(e.category for e in entries)
    shown = [
        e
        for e in entries
        if (not category or e.category == category)
        and (state != "enabled" or e.enabled)
        and (state != "disabled" or not e.enabled)
        and (not search or _matches(e, search))
    ]
    context = {
        "entries": shown,
        "total": len(entries),
        "categories": sorted(counts.items()),
        "filters": {"q": search, "category": category, "state": state},
        "guides": set(get_guides()),
        "deleted": versions.deleted_entries(db_session=db_session)[:20],
    }
    return page(request, db_session, "admin_faq_list.html", context)


def _matches(entry: FaqEntry, search: str) -> bool:
    folded = search.lower()
    haystack = [entry.id, entry.question, entry.answer, entry.source or "", *entry.alternates, *entry.keywords]
    return any(folded in text.lower() for text in haystack)


@router.post("/faq/categories/rename", response_class=Response)
def rename_category(
    request: Request,
    user: Admin,
    db_session: DbSession,
    old: Annotated[str, Form()] = "",
    new: Annotated[str, Form()] = "",
) -> Response:
    """Move every entry of one category to another name (a new version of each)."""
    old, new = old.strip(), new.strip()
    if not old or not new or len(new) > 64:
        return failed(request, db_session, "请填写原分类和新分类名称（最多 64 字）", FAQ_PATH)
    moved = 0
    for entry in service.get_all(db_session=db_session):
        if entry.category == old:
            values = {**versions.snapshot(entry), "category": new}
            service.upsert(db_session=db_session, faq_in=FaqIn.model_validate(values), author=author(user))
            moved += 1
    if not moved:
        return failed(request, db_session, f"分类「{old}」下没有条目", FAQ_PATH)
    audit(db_session, user, "faq_category_renamed", before={"category": old}, after={"category": new, "entries": moved})
    return _saved(request, db_session, f"已将分类「{old}」的 {moved} 个条目改为「{new}」", FAQ_PATH)


# --- editor --------------------------------------------------------------------------------------------------


def _form_values(
    faq_id: str,
    category: str,
    question: str,
    alternates: str,
    keywords: str,
    answer: str,
    source: str,
    enabled: str | None,
) -> dict[str, Any]:
    return {
        "id": faq_id.strip(),
        "category": category.strip(),
        "question": question.strip(),
        "alternates": _lines(alternates),
        "keywords": _lines(keywords, KEYWORD_SEPARATORS),
        "answer": answer.strip(),
        "source": " ".join(source.split()),
        "enabled": enabled is not None,
    }


def _editor(
    request: Request,
    db_session: Session,
    values: dict[str, Any],
    *,
    entry: FaqEntry | None,
    errors: list[str] | None = None,
    keys: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    history = versions.get_versions(db_session=db_session, faq_id=entry.id)[:10] if entry is not None else []
    categories = sorted({e.category for e in service.get_all(db_session=db_session)})
    context = {
        "values": values,
        "entry": entry,
        "errors": errors or [],
        "keys": keys or [],
        "categories": categories,
        "history": history,
        "authors": author_names(db_session),
        "self_check": _self_check(db_session, entry) if entry is not None and not errors else [],
        "has_guide": entry is not None and entry.id in get_guides(),
        "outcomes": OUTCOME_LABELS,
    }
    return page(request, db_session, "admin_faq_edit.html", context, status_code=status_code)


def _self_check(db_session: Session, entry: FaqEntry) -> list[dict[str, Any]]:
    """How the live matcher treats each of the entry's phrasings (one that lands elsewhere needs rewording)."""
    if not entry.enabled:
        return []
    matcher = get_live_knowledge().current(db_session=db_session).matcher
    checks = []
    for text in [entry.question, *entry.alternates][:30]:
        result = matcher.match(text)
        top = result.candidates[0].topic if result.candidates else None
        checks.append({"text": text, "outcome": result.outcome, "topic": top, "ok": result.topic == entry.id})
    return checks


@router.get("/faq/new", response_class=Response)
def new_entry(request: Request, user: Admin, db_session: DbSession) -> Response:
    """An empty editor, or one filled from an unanswered question (question, alt, category, key parameters)."""
    params = request.query_params
    values = {
        "id": (params.get("id") or "")[:64],
        "category": (params.get("category") or "")[:64],
        "question": (params.get("question") or "")[:500],
        "alternates": [a[:500] for a in params.getlist("alt")][:20],
        "keywords": [],
        "answer": "",
        "source": "",
        "enabled": True,
    }
    return _editor(request, db_session, values, entry=None, keys=params.getlist("key")[:200])


@router.post("/faq/new", response_class=Response)
def create_entry(
    request: Request,
    user: Admin,
    db_session: DbSession,
    faq_id: Annotated[str, Form(alias="id")] = "",
    category: Annotated[str, Form()] = "",
    question: Annotated[str, Form()] = "",
    alternates: Annotated[str, Form()] = "",
    keywords: Annotated[str, Form()] = "",
    answer: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    enabled: Annotated[str | None, Form()] = None,
    key: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Create an entry (version 1); questions it came from leave the unanswered list."""
    values = _form_values(faq_id, category, question, alternates, keywords, answer, source, enabled)
    keys = (key or [])[:200]
    try:
        faq_in = FaqIn.model_validate(values)
    except ValidationError as exc:
        return _editor(request, db_session, values, entry=None, errors=_errors(exc), keys=keys, status_code=422)
    if service.get(db_session=db_session, faq_id=faq_in.id) is not None:
        errors = [f"编号 {faq_in.id} 已存在，请换一个，或去编辑该条目"]
        return _editor(request, db_session, values, entry=None, errors=errors, keys=keys, status_code=409)
    entry, _ = service.upsert(db_session=db_session, faq_in=faq_in, author=author(user))
    if keys:
        unanswered.resolve(
            db_session=db_session, keys=keys, action=unanswered.NEW_FAQ, author=author(user), topic=entry.id
        )
    audit(db_session, user, "faq_created", after={"faq_id": entry.id, **versions.snapshot(entry)})
    return _saved(request, db_session, f"已新建 {entry.id}（v{entry.version}），智能助手已立即生效", faq_path(entry.id))


def _require_entry(db_session: Session, faq_id: str) -> FaqEntry:
    entry = service.get(db_session=db_session, faq_id=faq_id)
    if entry is None:
        raise not_found(f"FAQ 条目 {faq_id} 不存在")
    return entry


@router.get("/faq/{faq_id}", response_class=Response)
def edit_entry(request: Request, faq_id: str, user: Admin, db_session: DbSession) -> Response:
    """The editor of one entry, with its latest versions and how the matcher treats its phrasings."""
    entry = _require_entry(db_session, faq_id)
    return _editor(request, db_session, versions.snapshot(entry), entry=entry)


@router.post("/faq/{faq_id}", response_class=Response)
def save_entry(
    request: Request,
    faq_id: str,
    user: Admin,
    db_session: DbSession,
    category: Annotated[str, Form()] = "",
    question: Annotated[str, Form()] = "",
    alternates: Annotated[str, Form()] = "",
    keywords: Annotated[str, Form()] = "",
    answer: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    enabled: Annotated[str | None, Form()] = None,
    version: Annotated[str, Form()] = "",
) -> Response:
    """Save the editor: a new version when anything changed; refused when someone saved since it was opened."""
    entry = _require_entry(db_session, faq_id)
    values = _form_values(faq_id, category, question, alternates, keywords, answer, source, enabled)
    if version.strip() and version.strip() != str(entry.version):
        errors = [f"该条目已被他人修改（当前 v{entry.version}，您编辑的是 v{version.strip()}），请核对后重新保存"]
        return _editor(request, db_session, values, entry=entry, errors=errors, status_code=status.HTTP_409_CONFLICT)
    try:
        faq_in = FaqIn.model_validate(values)
    except ValidationError as exc:
        return _editor(request, db_session, values, entry=entry, errors=_errors(exc), status_code=422)
    before = versions.snapshot(entry)
    entry, changed = service.upsert(db_session=db_session, faq_in=faq_in, author=author(user))
    if not changed:
        return done(request, db_session, "内容没有变化，未生成新版本", faq_path(faq_id))
    old, new = _changes(before, versions.snapshot(entry))
    audit(db_session, user, "faq_updated", before=old, after={"faq_id": faq_id, "version": entry.version, **new})
    return _saved(request, db_session, f"已保存 v{entry.version}，智能助手已立即生效", faq_path(faq_id))


def _set_enabled(request: Request, db_session: Session, user: StaffUser, faq_id: str, enabled: bool) -> Response:
    entry = _require_entry(db_session, faq_id)
    faq_in = FaqIn.model_validate({**versions.snapshot(entry), "enabled": enabled})
    entry, changed = service.upsert(db_session=db_session, faq_in=faq_in, author=author(user))
    if not changed:
        return done(request, db_session, "状态没有变化", faq_path(faq_id))
    audit(
        db_session,
        user,
        "faq_enabled" if enabled else "faq_disabled",
        before={"enabled": not enabled},
        after={"faq_id": faq_id, "version": entry.version, "enabled": enabled},
    )
    text = f"已{'启用' if enabled else '停用'} {faq_id}（v{entry.version}）"
    return _saved(request, db_session, text, faq_path(faq_id))


@router.post("/faq/{faq_id}/enable", response_class=Response)
def enable_entry(request: Request, faq_id: str, user: Admin, db_session: DbSession) -> Response:
    """Let the bot answer with this entry again."""
    return _set_enabled(request, db_session, user, faq_id, True)


@router.post("/faq/{faq_id}/disable", response_class=Response)
def disable_entry(request: Request, faq_id: str, user: Admin, db_session: DbSession) -> Response:
    """Stop the bot answering with this entry (it stays editable)."""
    return _set_enabled(request, db_session, user, faq_id, False)


@router.post("/faq/{faq_id}/delete", response_class=Response)
def delete_entry(request: Request, faq_id: str, user: Admin, db_session: DbSession) -> Response:
    """Remove an entry; its history stays and a rollback brings it back."""
    entry = _require_entry(db_session, faq_id)
    before = versions.snapshot(entry)
    service.delete(db_session=db_session, faq_id=faq_id, author=author(user))
    audit(db_session, user, "faq_deleted", before=before, after={"faq_id": faq_id})
    return _saved(request, db_session, f"已删除 {faq_id}，可在版本历史中恢复", FAQ_PATH)


# --- versions ------------------------------------------------------------------------------------------------


@router.get("/faq/{faq_id}/versions", response_class=Response)
def history(request: Request, faq_id: str, user: Admin, db_session: DbSession) -> Response:
    """Every version of an entry, each with what changed from the one before."""
    rows = versions.get_versions(db_session=db_session, faq_id=faq_id)
    if not rows:
        raise not_found(f"FAQ 条目 {faq_id} 没有版本记录")
    items = [
        {"version": row, "changes": versions.diff(rows[n + 1].snapshot if n + 1 < len(rows) else None, row.snapshot)}
        for n, row in enumerate(rows)
    ]
    context = {
        "faq_id": faq_id,
        "entry": service.get(db_session=db_session, faq_id=faq_id),
        "items": items,
        "authors": author_names(db_session),
        "action_labels": versions.ACTION_LABELS,
    }
    return page(request, db_session, "admin_faq_versions.html", context)


@router.get("/faq/{faq_id}/versions/{number}", response_class=Response)
def version_page(request: Request, faq_id: str, number: RowId, user: Admin, db_session: DbSession) -> Response:
    """One version's content and its diff against another version (`against`, default the one before) and
    against the current entry."""
    row = versions.get_version(db_session=db_session, faq_id=faq_id, version=number)
    if row is None:
        raise not_found(f"{faq_id} 没有 v{number}")
    against_param = request.query_params.get("against", "")
    if against_param.isdigit():
        other = versions.get_version(db_session=db_session, faq_id=faq_id, version=int(against_param))
    else:
        other = versions.previous(db_session=db_session, faq_id=faq_id, version=number)
    entry = service.get(db_session=db_session, faq_id=faq_id)
    current = versions.snapshot(entry) if entry is not None else None
    context = {
        "faq_id": faq_id,
        "row": row,
        "other": other,
        "entry": entry,
        "changes": versions.diff(other.snapshot if other else None, row.snapshot),
        "to_current": versions.diff(row.snapshot, current),
        "numbers": [v.version for v in versions.get_versions(db_session=db_session, faq_id=faq_id)],
        "fields": versions.FIELDS,
        "labels": versions.FIELD_LABELS,
        "as_text": versions.as_text,
        "authors": author_names(db_session),
        "action_labels": versions.ACTION_LABELS,
    }
    return page(request, db_session, "admin_faq_version.html", context)


@router.post("/faq/{faq_id}/versions/{number}/rollback", response_class=Response)
def rollback(request: Request, faq_id: str, number: RowId, user: Admin, db_session: DbSession) -> Response:
    """Restore a version's content as a new version."""
    entry = service.get(db_session=db_session, faq_id=faq_id)
    before = versions.snapshot(entry) if entry is not None else None
    try:
        entry, changed = service.rollback(db_session=db_session, faq_id=faq_id, version=number, author=author(user))
    except LookupError:
        raise not_found(f"{faq_id} 没有 v{number}") from None
    except ValidationError as exc:
        return failed(request, db_session, "无法回滚：" + "；".join(_errors(exc)), faq_path(faq_id))
    if not changed:
        return done(request, db_session, f"当前内容与 v{number} 相同，无需回滚", faq_path(faq_id))
    old, new = _changes(before, versions.snapshot(entry))
    after = {"faq_id": faq_id, "version": entry.version, "restored": number, **new}
    audit(db_session, user, "faq_rollback", before=old, after=after)
    return _saved(request, db_session, f"已回滚到 v{number} 的内容（新版本 v{entry.version}）", faq_path(faq_id))


def new_faq_link(question: str, alternates: list[str], keys: list[str], category: str = "") -> str:
    """The editor prefilled from an unanswered question."""
    params = [("question", question), *[("alt", a) for a in alternates], *[("key", k) for k in keys]]
    if category:
        params.append(("category", category))
    return f"{FAQ_PATH}/new?{urlencode(params)}"
