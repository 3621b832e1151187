"""The FastAPI application."""

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bot import views as bot_views
from bot.bootstrap import close_senders, get_router, make_senders, make_workers, prepare_database, warm_knowledge
from bot.channels.telegram import views as telegram_views
from bot.channels.wechat import views as wechat_views
from bot.config import get_settings
from bot.invoices import views as invoice_views
from bot.merchants import views as merchant_views
from knowledge import views as knowledge_views

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_app: FastAPI):
    prepare_database()
    get_router()
    await asyncio.to_thread(warm_knowledge)  # build the matcher before the first merchant waits for it
    senders = make_senders() if get_settings().run_worker_in_serve else {}
    workers = make_workers(senders) if get_settings().run_worker_in_serve else []
    for worker in workers:
        worker.start()
        log.info("%s started", worker.name)
    try:
        yield
    finally:
        for worker in workers:
            worker.stop()
        close_senders(senders)


def create_app() -> FastAPI:
    """Build the app with every domain's routes."""
    app = FastAPI(title="merchant-assist", version="0.1.0", lifespan=lifespan)
    app.include_router(bot_views.router)
    app.include_router(knowledge_views.router)
    app.include_router(wechat_views.router)
    app.include_router(telegram_views.router)
    app.include_router(invoice_views.router)
    app.include_router(merchant_views.router)
    return app
