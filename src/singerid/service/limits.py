"""Request limits enforced below the application, while the body streams in.

`BodyLimit` refuses a request whose declared Content-Length exceeds the limit before reading any of it, counts the
bytes of the others as they arrive and stops at the limit (nothing past it reaches the multipart parser, so nothing
past it is ever written to disk), and answers 408 to a client that stalls between body chunks. The application's
answer to a body cut off this way is replaced by the limit's own `{"error": ...}`.
"""
from __future__ import annotations

import asyncio
import json
from typing import Callable


class _BodyRefused(Exception):
    pass


async def send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: `limit(path)` bytes per request body, `read_timeout` seconds between body chunks."""

    def __init__(self, app, limit: Callable[[str], int], read_timeout: float):
        self.app, self.limit, self.read_timeout = app, limit, read_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await send_error(send, 413, f"request body larger than {limit / 2**20:.1f} MB")
        state = {"received": 0, "done": False, "refused": None, "started": False}

        async def limited_receive():
            if state["done"]:  # body complete: later receives wait for a disconnect, no timeout
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.read_timeout)
            except asyncio.TimeoutError:
                state["refused"] = (408, f"upload stalled: no data for {self.read_timeout:g} s")
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
