"""The FastAPI application."""

from contextlib import asynccontextmanager

from fastapi import FastAPI

from bot import views as bot_views
from bot.bootstrap import get_router, prepare_database
from knowledge import views as knowledge_views


@asynccontextmanager
async def lifespan(_app: FastAPI):
    prepare_database()
    get_router()
    yield


def create_app() -> FastAPI:
    """Build the app with every domain's routes."""
    app = FastAPI(title="merchant-assist", version="0.1.0", lifespan=lifespan)
    app.include_router(bot_views.router)
    app.include_router(knowledge_views.router)
    return app
