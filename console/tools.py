"""FAQ import and export (YAML, CSV) and "try a question": the reply a merchant would get, and why."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

from console import trial
from console.identity import Admin
from console.pages import BASE, audit, author, done, failed, page
from console.templating import PAGE_HEADERS, templates
from core.web import DbSession
from knowledge import service
from knowledge.live import get_live_knowledge

router = APIRouter()
FAQ_PATH = f"{BASE}/faq"
IMPORT_PATH = f"{BASE}/faq/import"
MAX_IMPORT_BYTES = 2 * 1024 * 1024


# --- export and import ---------------------------------------------------------------------------------------


def _download(text: str, media_type: str, suffix: str) -> Response:
    name = f"faq-{datetime.now().strftime('%Y%m%d-%H%M')}.{suffix}"
    return Response(text, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/faq/export.yaml", response_class=Response)
def export_yaml(user: Admin, db_session: DbSession) -> Response:
    """Every entry as YAML (the shipped format)."""
    return _download(service.to_yaml(service.get_all(db_session=db_session)), "application/yaml; charset=utf-8", "yaml")


@router.get("/faq/export.csv", response_class=Response)
def export_csv(user: Admin, db_session: DbSession) -> Response:
    """Every entry as CSV, with a byte-order mark so that spreadsheet programs read the Chinese correctly."""
    text = "\ufeff" + service.to_csv(service.get_all(db_session=db_session))
    return _download(text, "text/csv; charset=utf-8", "csv")


@router.get("/faq/import", response_class=Response)
def import_form(request: Request, user: Admin, db_session: DbSession) -> Response:
    """Upload or paste a YAML or CSV file of entries."""
    return page(request, db_session, "admin_faq_import.html", {"columns": service.CSV_COLUMNS})


def decode(data: bytes) -> str:
    """File bytes as text: UTF-8 (with or without BOM), else GB18030 as Chinese spreadsheet programs save it."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def detect_format(text: str, filename: str = "", chosen: str = "auto") -> str:
    """The format, "yaml" or "csv": as chosen, else by file name, else by the first line."""
    if chosen in ("yaml", "csv"):
        return chosen
    name = filename.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    first = text.lstrip("\ufeff").lstrip().split("\n", 1)[0]
    return "csv" if first.startswith("id,") or ("," in first and "question" in first) else "yaml"


@router.post("/faq/import", response_class=Response)
async def import_entries(
    request: Request,
    user: Admin,
    db_session: DbSession,
    file: Annotated[UploadFile | None, File()] = None,
    text: Annotated[str, Form()] = "",
    format: Annotated[str, Form()] = "auto",
) -> Response:
    """Create or update entries from the file (or pasted text); each changed entry gets a new version."""
    filename = ""
    if file is not None and file.filename:
        data = await file.read(MAX_IMPORT_BYTES + 1)
        if len(data) > MAX_IMPORT_BYTES:
            return failed(request, db_session, "文件过大（最多 2 MB）", IMPORT_PATH)
        try:
            text, filename = decode(data), file.filename
        except UnicodeDecodeError:
            return failed(request, db_session, "无法识别文件编码，请保存为 UTF-8", IMPORT_PATH)
    if not text.strip():
        return failed(request, db_session, "请选择文件或粘贴内容", IMPORT_PATH)
    if len(text) > MAX_IMPORT_BYTES or len(text.encode("utf-8", errors="replace")) > MAX_IMPORT_BYTES:
        return failed(request, db_session, "内容过大（最多 2 MB）", IMPORT_PATH)
    kind = detect_format(text, filename, format)
    try:
        entries = service.parse_csv(text) if kind == "csv" else service.parse_yaml(text)
    except ValueError as exc:
        return failed(request, db_session, f"导入失败（{kind.upper()}）：{exc}", IMPORT_PATH)
    counts = service.import_entries(db_session=db_session, entries=entries, author=author(user))
    audit(db_session, user, "faq_imported", after={"format": kind, "file": filename[:100], **counts})
    response = done(
        request,
        db_session,
        f"导入完成：新建 {counts['created']} 条，更新 {counts['updated']} 条，未变 {counts['unchanged']} 条",
        FAQ_PATH,
    )
    get_live_knowledge().refresh()
    return response


# --- try a question ------------------------------------------------------------------------------------------


def _question(request: Request) -> str:
    return (request.query_params.get("q") or "")[:2000]


@router.get("/faq/try", response_class=Response)
def try_page(request: Request, user: Admin, db_session: DbSession) -> Response:
    """The form, with the reply for `q` and why (the page updates it while typing; without scripts, submit)."""
    question = _question(request)
    result = trial.try_question(db_session=db_session, text=question) if question.strip() else None
    return page(request, db_session, "admin_faq_try.html", {"q": question, "result": result})


@router.get("/faq/try.part", response_class=HTMLResponse)
def try_part(request: Request, user: Admin, db_session: DbSession) -> HTMLResponse:
    """The result block for `q` alone, for live updates while typing."""
    question = _question(request)
    result = trial.try_question(db_session=db_session, text=question) if question.strip() else None
    html = templates.get_template("admin_faq_try_result.html").render({"q": question, "result": result})
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get("/faq/try.json")
def try_json(request: Request, user: Admin, db_session: DbSession) -> JSONResponse:
    """The result for `q` as JSON."""
    return JSONResponse(trial.try_question(db_session=db_session, text=_question(request)))
