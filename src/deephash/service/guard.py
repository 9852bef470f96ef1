"""The service's ASGI safety net: a request body limit and a catch-all 500.

:class:`Guard` answers 413 at once when ``Content-Length`` announces a body over the
limit, and counts the bytes actually received (a chunked body, or a header that lies):
past the limit it marks the request (``scope[TOO_LARGE]``) and ends the body, and the
app's error handler turns the failed parse into a 413. An exception that no handler took
becomes a 500 ``{"error": ...}``, logged with its traceback; the server goes on.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: set in the ASGI scope of a request whose body went over the limit
TOO_LARGE = "deephash.body_too_large"


def too_large_message(limit: int) -> str:
    return (f"the request body is larger than this server's limit of {limit:,} bytes "
            "(--max-upload-bytes); send a smaller image or fewer images")


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """ASGI middleware: ``max_body`` bytes per request body, and no unhandled exception."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1").strip()
        if length and (not length.isdigit() or int(length) > self.max_body):
            await send_json(send, 413 if length.isdigit() else 400, {"error": (
                too_large_message(self.max_body) if length.isdigit()
                else f"Content-Length {length!r} is not a number; send a valid request")})
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    scope[TOO_LARGE] = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            log.exception("unexpected error answering %s %s", scope.get("method"),
                          scope.get("path"))
            if not started:
                await send_json(send, 500, {"error": "internal error while answering this "
                                                     "request (logged on the server); retry, "
                                                     "or report it with the server's log"})
