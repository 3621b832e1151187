"""FAQ version history: every save is a snapshot; versions compare field by field as an HTML diff."""

import difflib
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import utc
from knowledge.models import FaqEntry, FaqVersion

FIELDS = ("category", "question", "alternates", "keywords", "answer", "source", "enabled")
FIELD_LABELS = {
    "category": "分类",
    "question": "标准问题",
    "alternates": "相似问法",
    "keywords": "关键词",
    "answer": "答案",
    "source": "依据",
    "enabled": "状态",
}
ACTION_LABELS = {"created": "新建", "updated": "修改", "rollback": "回滚", "deleted": "删除"}


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between two versions, with the before/after text and an HTML diff of them."""

    field: str
    label: str
    before: str
    after: str
    html: str


def snapshot(entry: FaqEntry) -> dict[str, Any]:
    """Every editable field of an entry, as a JSON-ready dict."""
    return {
        "id": entry.id,
        "category": entry.category,
        "question": entry.question,
        "alternates": list(entry.alternates or []),
        "keywords": list(entry.keywords or []),
        "answer": entry.answer,
        "source": entry.source or "",
        "enabled": bool(entry.enabled),
    }


def latest_number(*, db_session: Session, faq_id: str) -> int:
    """The highest version number recorded for an entry (0 when none)."""
    return db_session.scalar(select(func.max(FaqVersion.version)).where(FaqVersion.faq_id == faq_id)) or 0


def record(
    *,
    db_session: Session,
    faq_id: str,
    version: int,
    action: str,
    content: dict[str, Any],
    author: str,
    note: str = "",
    now: datetime | None = None,
) -> FaqVersion:
    """Store one version of an entry."""
    row = FaqVersion(
        faq_id=faq_id,
        version=version,
        action=action,
        snapshot=content,
        author=author[:64],
        note=note[:200],
        created_at=utc(now),
    )
    db_session.add(row)
    return row


def get_versions(*, db_session: Session, faq_id: str) -> list[FaqVersion]:
    """An entry's versions, newest first."""
    query = select(FaqVersion).where(FaqVersion.faq_id == faq_id).order_by(FaqVersion.version.desc())
    return list(db_session.scalars(query))


def get_version(*, db_session: Session, faq_id: str, version: int) -> FaqVersion | None:
    """One version of an entry."""
    query = select(FaqVersion).where(FaqVersion.faq_id == faq_id, FaqVersion.version == version)
    return db_session.scalar(query)


def previous(*, db_session: Session, faq_id: str, version: int) -> FaqVersion | None:
    """The version saved before this one."""
    query = (
        select(FaqVersion)
        .where(FaqVersion.faq_id == faq_id, FaqVersion.version < version)
        .order_by(FaqVersion.version.desc())
        .limit(1)
    )
    return db_session.scalar(query)


def as_text(field: str, value: Any) -> str:
    """A field's value as the text shown and compared: lists one item a line, the flag as 启用/停用."""
    if value is None:
        return ""
    if field == "enabled":
        return "启用" if value else "停用"
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[FieldChange]:
    """The fields that differ between two snapshots (None: nothing, e.g. before creation or after deletion)."""
    before, after = before or {}, after or {}
    changes = []
    for field in FIELDS:
        old, new = as_text(field, before.get(field)), as_text(field, after.get(field))
        if old == new:
            continue
        lines = field in ("alternates", "keywords")
        changes.append(FieldChange(field, FIELD_LABELS[field], old, new, html_diff(old, new, by_line=lines)))
    return changes


def html_diff(old: str, new: str, *, by_line: bool = False) -> str:
    """Escaped HTML of `new` with removed parts in <del> and added parts in <ins> (by character, or by line)."""
    a = old.split("\n") if by_line else list(old)
    b = new.split("\n") if by_line else list(new)
    joiner = "\n" if by_line else ""
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(escape(joiner.join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{escape(joiner.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{escape(joiner.join(b[j1:j2]))}</ins>")
    return joiner.join(out) if by_line else "".join(out)


def deleted_entries(*, db_session: Session) -> list[FaqVersion]:
    """The last version of each entry that no longer exists (deleted), newest first."""
    latest = (
        select(FaqVersion.faq_id, func.max(FaqVersion.version).label("version")).group_by(FaqVersion.faq_id).subquery()
    )
    query = (
        select(FaqVersion)
        .join(latest, (FaqVersion.faq_id == latest.c.faq_id) & (FaqVersion.version == latest.c.version))
        .outerjoin(FaqEntry, FaqEntry.id == FaqVersion.faq_id)
        .where(FaqEntry.id.is_(None))
        .order_by(FaqVersion.created_at.desc(), FaqVersion.faq_id)
    )
    return list(db_session.scalars(query))
