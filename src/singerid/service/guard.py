"""The connection edge below the application: uvicorn's h11 protocol with a deadline for the request line and
headers, and JSON for the requests it cannot parse.

- A client must finish a request's line and headers within `header_timeout_s` of connecting (or of the previous
  response): half a request line, or headers sent a byte every few seconds, no longer hold a connection for ever.
  (The body has its own limits in `limits.BodyLimit`: a pause between chunks, a total time.)
- A request h11 refuses (a negative Content-Length, a malformed line) gets `{"error": ...}` with 400, like every
  other refusal, not uvicorn's plain text.
"""
from __future__ import annotations

import json
import logging
import os

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

ENV = "SINGERID_SERVICE"  # the service's JSON config (app.ServiceConfig), read for header_timeout_s


def _header_timeout() -> float:
    try:
        return float(json.loads(os.environ.get(ENV, "{}")).get("header_timeout_s", 10.0))
    except (ValueError, TypeError, AttributeError):
        return 10.0


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    header_timeout = _header_timeout()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _headers_overdue(self) -> None:
        """Still no complete request line and headers (h11: the client is IDLE) → 408 and close."""
        self._header_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE or busy:
            return
        if self.conn.trailing_data[0]:  # part of a request came: say why; an idle connection just closes
            log.info("closing a connection that sent no complete request headers in %g s", self.header_timeout)
            self.transport.write(_raw_response(408, "Request Timeout",
                                               f"request headers not received within {self.header_timeout:g} s"))
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request on this connection gets the same deadline

    def connection_lost(self, exc) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_raw_response(400, "Bad Request", "invalid HTTP request (malformed line or headers, "
                                                               "or a Content-Length that is not a number >= 0)"))
        self.transport.close()
