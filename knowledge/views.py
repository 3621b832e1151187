"""Admin API for FAQ entries; every route needs the admin token."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Response, status
from pydantic import BaseModel

from core.web import DbSession, require_admin
from knowledge import service
from knowledge.live import get_live_knowledge
from knowledge.schemas import FaqIn, FaqOut

router = APIRouter(prefix="/api/admin/faq", tags=["admin"], dependencies=[Depends(require_admin)])
MAX_IMPORT_BYTES = 2 * 1024 * 1024  # as the console's import form; YAML parsing is slow (a 20 MB list takes minutes)


class TryIn(BaseModel):
    text: str


@router.get("", response_model=list[FaqOut])
def list_entries(db_session: DbSession) -> list:
    """All FAQ entries, enabled or not."""
    return service.get_all(db_session=db_session)


@router.get("/export", response_class=Response)
def export_entries(db_session: DbSession) -> Response:
    """All FAQ entries as YAML."""
    text = service.to_yaml(service.get_all(db_session=db_session))
    return Response(text, media_type="application/yaml; charset=utf-8")


@router.post("/import")
def import_entries(db_session: DbSession, body: Annotated[str, Body(media_type="application/yaml")]) -> dict:
    """Create or update entries from a YAML list (at most 2 MB)."""
    if len(body.encode("utf-8")) > MAX_IMPORT_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"FAQ file larger than {MAX_IMPORT_BYTES} bytes")
    try:
        entries = service.parse_yaml(body)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid FAQ file: {exc}") from exc
    counts = service.import_entries(db_session=db_session, entries=entries)
    db_session.commit()
    get_live_knowledge().refresh()
    return counts


@router.post("/try")
def try_question(body: TryIn, db_session: DbSession) -> dict:
    """The matcher's ranked candidates and confidence for a question."""
    result = get_live_knowledge().current(db_session=db_session).matcher.match(body.text)
    return {
        "outcome": result.outcome,
        "confidence": result.confidence,
        "candidates": [{"topic": c.topic, "score": c.score} for c in result.candidates],
    }


@router.get("/{faq_id}", response_model=FaqOut)
def get_entry(faq_id: str, db_session: DbSession):
    """One FAQ entry."""
    entry = service.get(db_session=db_session, faq_id=faq_id)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no FAQ entry {faq_id!r}")
    return entry


@router.put("/{faq_id}", response_model=FaqOut)
def put_entry(faq_id: str, faq_in: FaqIn, db_session: DbSession):
    """Create or replace an FAQ entry; the matcher picks the change up on the next message."""
    if faq_in.id != faq_id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the id in the body differs from the URL")
    entry, _ = service.upsert(db_session=db_session, faq_in=faq_in)
    db_session.commit()
    get_live_knowledge().refresh()
    return entry


@router.delete("/{faq_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_entry(faq_id: str, db_session: DbSession) -> None:
    """Remove an FAQ entry."""
    if not service.delete(db_session=db_session, faq_id=faq_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no FAQ entry {faq_id!r}")
    db_session.commit()
    get_live_knowledge().refresh()
