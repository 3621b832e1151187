"""FAQ entries: read, write, import and export."""

from pathlib import Path

import yaml
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from knowledge.models import FaqEntry, KnowledgeRevision
from knowledge.schemas import FaqIn

DATA_DIR = Path(__file__).resolve().parent / "data"
EDITABLE = ("category", "question", "alternates", "keywords", "answer", "enabled")


def get(*, db_session: Session, faq_id: str) -> FaqEntry | None:
    """Return one entry by id."""
    return db_session.get(FaqEntry, faq_id)


def get_all(*, db_session: Session, enabled_only: bool = False) -> list[FaqEntry]:
    """Return every entry, ordered by category and id."""
    query = select(FaqEntry).order_by(FaqEntry.category, FaqEntry.id)
    if enabled_only:
        query = query.where(FaqEntry.enabled.is_(True))
    return list(db_session.scalars(query))


def signature(*, db_session: Session) -> tuple:
    """A fingerprint that changes whenever any entry is written or deleted."""
    return (db_session.scalar(select(KnowledgeRevision.revision).where(KnowledgeRevision.id == 1)),)


def _bump_revision(db_session: Session) -> None:
    db_session.execute(
        update(KnowledgeRevision).where(KnowledgeRevision.id == 1).values(revision=KnowledgeRevision.revision + 1)
    )


def upsert(*, db_session: Session, faq_in: FaqIn) -> tuple[FaqEntry, bool]:
    """Create or update an entry; return it and whether anything changed (a change bumps the version)."""
    entry = get(db_session=db_session, faq_id=faq_in.id)
    values = faq_in.model_dump(include=set(EDITABLE))
    if entry is None:
        entry = FaqEntry(id=faq_in.id, version=1, **values)
        db_session.add(entry)
        db_session.flush()
        _bump_revision(db_session)
        return entry, True
    if all(getattr(entry, k) == v for k, v in values.items()):
        return entry, False
    for key, value in values.items():
        setattr(entry, key, value)
    entry.version += 1
    db_session.flush()
    _bump_revision(db_session)
    return entry, True


def delete(*, db_session: Session, faq_id: str) -> bool:
    """Remove an entry; return False when it did not exist."""
    entry = get(db_session=db_session, faq_id=faq_id)
    if entry is None:
        return False
    db_session.delete(entry)
    db_session.flush()
    _bump_revision(db_session)
    return True


def import_entries(*, db_session: Session, entries: list[FaqIn]) -> dict[str, int]:
    """Upsert many entries; return how many were created, updated and unchanged."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for faq_in in entries:
        existed = get(db_session=db_session, faq_id=faq_in.id) is not None
        _, changed = upsert(db_session=db_session, faq_in=faq_in)
        counts["unchanged" if not changed else "updated" if existed else "created"] += 1
    return counts


def parse_yaml(text: str) -> list[FaqIn]:
    """Parse and validate a YAML list of entries (raises ValueError with the reason)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from exc
    if not isinstance(data, list):
        raise ValueError("the file must hold a YAML list of FAQ entries")
    entries = [FaqIn.model_validate(item) for item in data]
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate ids: {', '.join(duplicates)}")
    return entries


def to_yaml(entries: list[FaqEntry]) -> str:
    """Serialise entries as YAML, in the shipped format."""
    rows = [{"id": e.id, **{k: getattr(e, k) for k in EDITABLE}, "version": e.version} for e in entries]
    return yaml.safe_dump(rows, allow_unicode=True, sort_keys=False, width=120)


def default_entries() -> list[FaqIn]:
    """The FAQ shipped with the project."""
    entries: list[FaqIn] = []
    for path in sorted((DATA_DIR / "faq").glob("*.yaml")):
        entries += parse_yaml(path.read_text(encoding="utf-8"))
    return entries


def seed_defaults(*, db_session: Session) -> int:
    """Load the shipped FAQ into an empty table; return how many entries were added."""
    if db_session.scalar(select(func.count(FaqEntry.id))):
        return 0
    return import_entries(db_session=db_session, entries=default_entries())["created"]
