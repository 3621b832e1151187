"""The Telegram webhook: POST /telegram, checked by secret token, each update handled once, replies via the outbox."""

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, Response, status
from telegram import Update
from telegram.ext import Application

from bot.channels.telegram import inbound
from core.redact import mask
from core.settings import get_settings
from core.store import get_store
from core.web import read_body

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
SEEN_SECONDS = 24 * 3600
STATE_KEY = "telegram_application"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build and initialise the PTB Application when a bot token is configured; shut it down on exit."""
    settings = get_settings()
    message_router = app.state.message_router
    application = inbound.build_application(router=message_router) if settings.telegram_bot_token else None
    setattr(app.state, STATE_KEY, application)
    if application is not None:
        try:
            await application.initialize()
        except Exception as exc:  # Telegram unreachable at start: the webhook retries on demand
            log.warning("telegram: could not initialise the bot yet: %s", exc)
    try:
        yield
    finally:
        if application is not None:
            await application.shutdown()


router = APIRouter(lifespan=lifespan)


def check_secret(given: str | None) -> None:
    """403 unless the request carries the configured secret token."""
    expected = get_settings().telegram_secret_token
    if not expected:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Telegram webhook disabled: set TELEGRAM_SECRET_TOKEN")
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-Telegram-Bot-Api-Secret-Token")


async def ready_application(request: Request) -> Application:
    """The initialised Application; 503 (Telegram retries) when no token is set or Telegram is unreachable."""
    application = getattr(request.app.state, STATE_KEY, None)
    if application is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Telegram bot not configured: set TELEGRAM_BOT_TOKEN")
    try:
        await application.initialize()  # no-op once done
    except Exception as exc:
        log.warning("telegram: bot not initialised: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Telegram bot API unreachable") from exc
    return application


def decode(body: bytes, application: Application) -> Update | None:
    """The Update in a body; None (logged) when it is not one PTB can read."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        return Update.de_json(data, application.bot)
    except Exception as exc:
        log.warning("telegram: ignoring undecodable update (%s): %.200r", exc, mask(body.decode("utf-8", "replace")))
        return None


@router.post("/telegram", include_in_schema=False)
async def webhook(
    request: Request,
    secret: Annotated[str | None, Header(alias="X-Telegram-Bot-Api-Secret-Token")] = None,
) -> Response:
    """Receive one update from Telegram; 200 once it is handled (or cannot be), so Telegram does not resend it."""
    check_secret(secret)
    body = await read_body(request, MAX_BODY_BYTES)
    application = await ready_application(request)
    update = decode(body, application)
    if update is None:
        return Response(status_code=status.HTTP_200_OK)
    store = get_store()
    seen = f"tg:update:{update.update_id}"
    if not await asyncio.to_thread(store.add, seen, "1", ttl=SEEN_SECONDS):
        log.info("telegram: dropping repeated update %s", update.update_id)
        return Response(status_code=status.HTTP_200_OK)
    if not await inbound.process(application, update):
        await asyncio.to_thread(store.delete, seen)  # let Telegram's redelivery try again
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "update not handled")
    return Response(status_code=status.HTTP_200_OK)
