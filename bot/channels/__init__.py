"""Channel adapters: turn a messaging platform's pushes into IncomingMessage and deliver Reply back.

Every adapter receives the app's message router (built by the app factory) rather than looking one up.
"""

from typing import Annotated

from fastapi import Depends, Request

from handlers.router import Router


async def message_router(request: Request) -> Router:
    """The message router the app factory gave this app (async: no thread hop to read it)."""
    return request.app.state.message_router


MessageRouter = Annotated[Router, Depends(message_router)]
