"""Request limits enforced below the application, while the body streams in.

`BodyLimit` refuses a request to a route that needs the bearer token when its headers do not carry it, and one whose
declared Content-Length exceeds the limit, both before reading any of the body; it counts the bytes of the others as
they arrive and stops at the limit (nothing past it reaches the multipart parser, so nothing past it is ever written
to disk), and answers 408 to a client that stalls between body chunks or takes longer than `total_timeout` for the
whole body. The application's answer to a body cut off this way is replaced by the limit's own `{"error": ...}`.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Callable


def bearer_ok(authorization: bytes | str | None, token: str | None) -> bool:
    """`Authorization: Bearer <token>` (the scheme in any case, RFC 9110), compared as bytes in constant time."""
    if not token or not authorization:
        return False
    if isinstance(authorization, str):
        authorization = authorization.encode("latin-1", "replace")  # how ASGI servers decoded the header
    scheme, _, given = authorization.strip().partition(b" ")
    return scheme.lower() == b"bearer" and secrets.compare_digest(given.strip(), token.encode())


class _BodyRefused(Exception):
    pass


async def send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: `limit(path)` bytes per request body, `read_timeout` seconds between body chunks and
    `total_timeout` for a whole body; `protected(method, path)` → what a request does when it needs the bearer
    `token` (None when it does not), checked from the headers before any of the body is read."""

    def __init__(self, app, limit: Callable[[str], int], read_timeout: float, total_timeout: float = 600.0,
                 protected: Callable[[str, str], str | None] = lambda m, p: None, token: str | None = None):
        self.app, self.limit, self.read_timeout, self.total_timeout = app, limit, read_timeout, total_timeout
        self.protected, self.token = protected, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        headers = dict(scope.get("headers") or [])
        what = self.protected(scope["method"], scope["path"])
        if what is not None and not bearer_ok(headers.get(b"authorization"), self.token):
            return await send_error(send, 401, f"a valid bearer token is required to {what}")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await send_error(send, 413, f"request body larger than {limit / 2**20:.1f} MB")
        state = {"received": 0, "done": False, "refused": None, "started": False}
        deadline = time.monotonic() + self.total_timeout

        async def limited_receive():
            if state["done"]:  # body complete: later receives wait for a disconnect, no timeout
                return await receive()
            left = deadline - time.monotonic()
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, min(self.read_timeout, left)))
            except asyncio.TimeoutError:
                state["refused"] = (408, f"upload stalled: no data for {self.read_timeout:g} s" if left > self.read_timeout
                                    else f"upload too slow: the request took longer than {self.total_timeout:g} s")
                raise _BodyRefused from None
            if msg["type"] == "http.request":
                state["received"] += len(msg.get("body", b""))
                if state["received"] > limit:
                    state["refused"] = (413, f"request body larger than {limit / 2**20:.1f} MB")
                    raise _BodyRefused
                state["done"] = not msg.get("more_body", False)
            return msg

        async def guarded_send(msg):
            if state["refused"] is not None:
                return  # the application's answer to a body we cut off: ours goes out instead
            state["started"] = state["started"] or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyRefused:
            pass
        if state["refused"] is not None and not state["started"]:
            await send_error(send, *state["refused"])
