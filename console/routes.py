"""The staff web console as one unit: its routers, static files and error pages, installed on the app."""

from fastapi import APIRouter, Depends, FastAPI, status
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from console import admin, auth, faq, insights, integrations, live, merchants, tickets, tools, unanswered
from console.csrf import csrf_protect
from console.errors import ConsoleError
from console.identity import require_admin
from console.pages import BASE
from console.templating import STATIC_DIR, error_page

# Admin pages about the knowledge base and insights, under /console/admin (admins only; every POST needs the CSRF
# token): FAQ editor, versions, import/export, try a question, unanswered questions, guides, analytics, incidents.
knowledge_router = APIRouter(
    prefix=BASE, tags=["console-admin"], dependencies=[Depends(require_admin), Depends(csrf_protect)]
)
for module in (tools, faq, unanswered, insights):  # the fixed /faq/... paths (export, import, try) before /faq/{id}
    knowledge_router.include_router(module.router)


HOME = "/console"  # the agents' queue; anonymous visitors are sent on to the login page


def home() -> RedirectResponse:
    """The site root leads to the console (its login page when not logged in)."""
    return RedirectResponse(HOME, status.HTTP_307_TEMPORARY_REDIRECT)


def install(app: FastAPI) -> None:
    """Add the console's routes (login, agent pages, admin pages), its static files and its error pages to `app`."""
    app.add_exception_handler(ConsoleError, error_page)
    app.add_api_route("/", home, methods=["GET", "HEAD"], include_in_schema=False)
    app.include_router(auth.router)
    app.include_router(tickets.router)
    app.include_router(live.router)
    app.include_router(live.stream_router)
    app.include_router(merchants.router)
    app.include_router(admin.router)
    app.include_router(integrations.router)
    app.include_router(knowledge_router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console_static")
