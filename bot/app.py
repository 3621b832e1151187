"""The FastAPI application."""

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bot import views as bot_views
from bot.bootstrap import close_senders, get_router, make_senders, prepare_database, warm_knowledge
from bot.channels.telegram import views as telegram_views
from bot.channels.wechat import views as wechat_views
from bot.config import get_settings
from bot.outbox.worker import OutboxWorker
from knowledge import views as knowledge_views

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_app: FastAPI):
    prepare_database()
    get_router()
    await asyncio.to_thread(warm_knowledge)  # build the matcher before the first merchant waits for it
    senders = make_senders() if get_settings().run_worker_in_serve else {}
    worker = OutboxWorker(senders) if senders else None
    if worker is not None:
        worker.start()
        log.info("outbox worker delivering for %s", ", ".join(sorted(senders)))
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()
        close_senders(senders)


def create_app() -> FastAPI:
    """Build the app with every domain's routes."""
    app = FastAPI(title="merchant-assist", version="0.1.0", lifespan=lifespan)
    app.include_router(bot_views.router)
    app.include_router(knowledge_views.router)
    app.include_router(wechat_views.router)
    app.include_router(telegram_views.router)
    return app
