"""FAQ entries: read, write (each write recorded as a version), roll back, import and export (YAML, CSV)."""

import csv
import io
from pathlib import Path

import yaml
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import safe_yaml, spreadsheet
from knowledge import versions
from knowledge.matcher import Topic
from knowledge.models import FaqEntry, FaqVersion, KnowledgeRevision
from knowledge.outside import outside_topics
from knowledge.schemas import FaqIn

DATA_DIR = Path(__file__).resolve().parent / "data"
EDITABLE = ("category", "question", "alternates", "keywords", "answer", "source", "enabled")
CSV_COLUMNS = ("id", *EDITABLE)
CSV_LIST_SEPARATOR = "|"
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "是", "启用"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "否", "停用"})


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


def upsert(
    *, db_session: Session, faq_in: FaqIn, author: str = "api", action: str | None = None, note: str = ""
) -> tuple[FaqEntry, bool]:
    """Create or update an entry; return it and whether anything changed (a change bumps the version and is
    recorded as a version by `author`)."""
    entry = get(db_session=db_session, faq_id=faq_in.id)
    values = faq_in.model_dump(include=set(EDITABLE))
    if entry is None:
        # 1, unless the id was used by an entry since deleted: its history goes on.
        number = versions.latest_number(db_session=db_session, faq_id=faq_in.id) + 1
        entry = FaqEntry(id=faq_in.id, version=number, **values)
        db_session.add(entry)
        db_session.flush()
        _record_version(db_session, entry, action or "created", author, note)
        _bump_revision(db_session)
        return entry, True
    if all(getattr(entry, k) == v for k, v in values.items()):
        return entry, False
    for key, value in values.items():
        setattr(entry, key, value)
    entry.version += 1
    db_session.flush()
    _record_version(db_session, entry, action or "updated", author, note)
    _bump_revision(db_session)
    return entry, True


def _record_version(db_session: Session, entry: FaqEntry, action: str, author: str, note: str) -> None:
    content = versions.snapshot(entry)
    versions.record(
        db_session=db_session,
        faq_id=entry.id,
        version=entry.version,
        action=action,
        content=content,
        author=author,
        note=note,
    )


def delete(*, db_session: Session, faq_id: str, author: str = "api") -> bool:
    """Remove an entry (its last content stays in the history as a "deleted" version); False when it did not
    exist."""
    entry = get(db_session=db_session, faq_id=faq_id)
    if entry is None:
        return False
    versions.record(
        db_session=db_session,
        faq_id=faq_id,
        version=entry.version + 1,
        action="deleted",
        content=versions.snapshot(entry),
        author=author,
    )
    db_session.delete(entry)
    db_session.flush()
    _bump_revision(db_session)
    return True


def rollback(*, db_session: Session, faq_id: str, version: int, author: str = "api") -> tuple[FaqEntry, bool]:
    """Restore an earlier version's content as a new version (a deleted entry comes back); LookupError when that
    version does not exist."""
    target = versions.get_version(db_session=db_session, faq_id=faq_id, version=version)
    if target is None:
        raise LookupError(f"no version {version} of FAQ entry {faq_id!r}")
    faq_in = FaqIn.model_validate({**target.snapshot, "id": faq_id})
    return upsert(db_session=db_session, faq_in=faq_in, author=author, action="rollback", note=f"回滚到 v{version}")


def import_entries(*, db_session: Session, entries: list[FaqIn], author: str = "import") -> dict[str, int]:
    """Upsert many entries; return how many were created, updated and unchanged."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for faq_in in entries:
        existed = get(db_session=db_session, faq_id=faq_in.id) is not None
        _, changed = upsert(db_session=db_session, faq_in=faq_in, author=author)
        counts["unchanged" if not changed else "updated" if existed else "created"] += 1
    return counts


def parse_yaml(text: str) -> list[FaqIn]:
    """Parse and validate a YAML list of entries (raises ValueError with the reason)."""
    try:
        data = safe_yaml.safe_load(text)
    except safe_yaml.UnsafeYamlError as exc:
        raise ValueError(str(exc)) from exc
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


def to_csv(entries: list[FaqEntry]) -> str:
    """Serialise entries as CSV: id, category, question, alternates and keywords (joined with "|"), answer, source,
    enabled (true/false)."""
    out = io.StringIO()
    writer = spreadsheet.safe_writer(out, lineterminator="\r\n")  # formula-looking text escaped
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow(
            [
                e.id,
                e.category,
                e.question,
                CSV_LIST_SEPARATOR.join(e.alternates or []),
                CSV_LIST_SEPARATOR.join(e.keywords or []),
                e.answer,
                e.source,
                "true" if e.enabled else "false",
            ]
        )
    return out.getvalue()


def parse_csv(text: str) -> list[FaqIn]:
    """Parse and validate CSV written by `to_csv` (or by hand in a spreadsheet); ValueError with the row and
    reason."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = [(name or "").strip() for name in reader.fieldnames or []]
    missing = [c for c in ("id", "category", "question", "answer") if c not in header]
    if missing:
        raise ValueError(f"the CSV header lacks: {', '.join(missing)} (columns: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    entries = []
    for number, row in enumerate(reader, start=2):
        if not any((value or "").strip() for key, value in row.items() if key is not None):
            continue
        try:
            entries.append(FaqIn.model_validate(_csv_row(row)))
        except ValueError as exc:
            raise ValueError(f"row {number}: {exc}") from exc
    _check_unique(entries)
    return entries


def _csv_row(row: dict[str, str | None]) -> dict:
    def cell(name: str) -> str:
        return spreadsheet.unescape_cell((row.get(name) or "").strip())

    enabled = cell("enabled").lower()
    if enabled and enabled not in TRUE_WORDS | FALSE_WORDS:
        raise ValueError(f"enabled must be true or false, not {enabled!r}")
    return {
        "id": cell("id"),
        "category": cell("category"),
        "question": cell("question"),
        "alternates": cell("alternates").split(CSV_LIST_SEPARATOR),
        "keywords": cell("keywords").split(CSV_LIST_SEPARATOR),
        "answer": cell("answer"),
        "source": cell("source"),
        "enabled": enabled not in FALSE_WORDS,
    }


def _check_unique(entries: list[FaqIn]) -> None:
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate ids: {', '.join(duplicates)}")


def default_entries() -> list[FaqIn]:
    """The FAQ shipped with the project."""
    entries: list[FaqIn] = []
    for path in sorted((DATA_DIR / "faq").glob("*.yaml")):
        entries += parse_yaml(path.read_text(encoding="utf-8"))
    return entries


def shipped_topics() -> list[Topic]:
    """The shipped FAQ entries and outside subjects as the matcher ranks them."""
    entries = default_entries()
    return [
        Topic(e.id, e.question, tuple(e.alternates), tuple(e.keywords), e.answer) for e in entries
    ] + outside_topics()


def seed_defaults(*, db_session: Session) -> int:
    """Load the shipped entries the table has never held (an entry an admin deleted stays deleted) and give shipped
    entries without a source the shipped one; return how many entries were added."""
    known = set(db_session.scalars(select(FaqVersion.faq_id).distinct())) | set(db_session.scalars(select(FaqEntry.id)))
    added = 0
    for faq_in in default_entries():
        if faq_in.id not in known:
            upsert(db_session=db_session, faq_in=faq_in, author="seed")
            added += 1
            continue
        entry = get(db_session=db_session, faq_id=faq_in.id)
        if entry is not None and not entry.source and faq_in.source:
            updated = FaqIn.model_validate({**versions.snapshot(entry), "id": entry.id, "source": faq_in.source})
            upsert(db_session=db_session, faq_in=updated, author="seed", note="补充依据")
    return added
