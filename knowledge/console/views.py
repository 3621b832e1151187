"""The admin console router for knowledge and insight pages, mounted under /console/admin (admins only; every
POST needs the session's CSRF token): FAQ editor, versions, import/export, try a question, unanswered questions,
guides, analytics and incidents."""

from fastapi import APIRouter, Depends

from knowledge.console import faq_views, insight_views, tools_views, unanswered_views
from knowledge.console.common import BASE
from ticketing.console.auth import require_admin
from ticketing.console.csrf import csrf_protect

router = APIRouter(prefix=BASE, tags=["console-admin"], dependencies=[Depends(require_admin), Depends(csrf_protect)])
# The fixed /faq/... paths (export, import, try) come before /faq/{faq_id}.
router.include_router(tools_views.router)
router.include_router(faq_views.router)
router.include_router(unanswered_views.router)
router.include_router(insight_views.router)
