"""What guards `bertclf serve` below its routes: ASGI middleware that limits requests in
flight and checks an API key, and uvicorn's HTTP/1.1 protocol with deadlines for reading and
writing. Each answers what it refuses itself, in the error form of the route asked: the Open
Inference Protocol's `{"error": ...}` under /v2, `{"detail": ...}` elsewhere."""

import asyncio
import hashlib
import hmac
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# the probes: answered without a key and never refused for load
PROBES = frozenset({"/healthz", "/v2/health/live", "/v2/health/ready"})
UNCOUNTED = PROBES | {"/metrics"}


def error_body(path: str, message: str) -> dict:
    """An error in the form the route's protocol uses."""
    return {"error": message} if path == "/v2" or path.startswith("/v2/") else {"detail": message}


async def send_error(send, path: str, status: int, message: str, headers=()) -> None:
    """Answer an HTTP request with an error from ASGI middleware (no app has answered)."""
    body = json.dumps(error_body(path, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestsInFlight:
    """ASGI middleware: at most `limit` HTTP requests in flight; more get 503 with
    Retry-After. uvicorn's own limit_concurrency counts open connections too, so idle
    keep-alive sockets starved the server: 40 answers out of 37,473 requests with 300 of them.
    The probes and /metrics are neither counted nor refused: a server busy at its limit is
    alive, and says so."""

    def __init__(self, app, limit: int):
        self.app, self.limit, self.active = app, limit, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in UNCOUNTED:
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            return await send_error(
                send, scope["path"], 503, "too many requests at once", [(b"retry-after", b"1")]
            )
        self.active += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.active -= 1


class BearerKey:
    """ASGI middleware: with an API key, every route but the health probes needs
    `Authorization: Bearer <key>`; without it, or with another key, 401. The key is compared
    through its sha256 in constant time (`hmac.compare_digest`), and never logged."""

    def __init__(self, app, key: str):
        self.app = app
        self.expected = hashlib.sha256(f"Bearer {key}".encode()).digest()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in PROBES:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(hashlib.sha256(given).digest(), self.expected):
            return await send_error(
                send,
                scope["path"],
                401,
                "this server needs an API key: send Authorization: Bearer <key>",
                [(b"www-authenticate", b"Bearer")],
            )
        return await self.app(scope, receive, send)


class ReadDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for reading each request: from the
    connection's start, or a request's first byte, to the end of its body. A client that has
    not sent a whole request by then gets 408 and the connection is closed.

    And one for writing: a client that leaves an answer unread for `write_timeout` seconds,
    while the socket's buffers are full, is cut off.

    uvicorn has neither (its keep-alive timer starts only after a response), so idle
    connections and clients that send headers or a body slowly would hold a connection, and
    keep a graceful shutdown waiting, for ever; clients that pipelined requests and read
    nothing held their requests in flight for ever (198 of them starved every good client).
    `read_timeout` and `write_timeout` are set on a subclass."""

    read_timeout: float
    write_timeout: float
    _deadline: asyncio.TimerHandle | None = None
    _write_deadline: asyncio.TimerHandle | None = None

    def shutdown(self) -> None:
        """SIGTERM: a connection still sending its request gets 503 and is closed, and one
        that does not read its answer is cut, at once. Left to the end of the graceful period,
        uvicorn would cancel their requests and log a traceback for each."""
        if self.flow.write_paused:
            self.transport.abort()
        elif self.conn.their_state == h11.SEND_BODY and self.conn.our_state == h11.SEND_RESPONSE:
            self._answer_and_close(b"503 Service Unavailable", b"the server is shutting down\n")
        else:
            super().shutdown()

    def pause_writing(self) -> None:
        """The transport's buffer is full: the client is not reading. Its deadline starts."""
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        self._cancel_write_deadline()
        super().resume_writing()

    def _cancel_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_timed_out(self) -> None:
        """Cut the connection, dropping what it could not send: close() would wait to flush.
        uvicorn then tells the request it was disconnected, and its send returns."""
        self._write_deadline = None
        self.transport.abort()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._watch_reading()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_reading()

    def connection_lost(self, exc) -> None:
        self._cancel_deadline()
        self._cancel_write_deadline()
        super().connection_lost(exc)

    def _watch_reading(self) -> None:
        """A deadline runs while a request is only partly received; none once it is whole
        (then the request deadline applies) or between requests (then keep-alive's)."""
        reading = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if reading and self._deadline is None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)
        elif not reading:
            self._cancel_deadline()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # no response begun (IDLE before a request's headers, SEND_RESPONSE while its body is
        # awaited): say why before closing
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._answer_and_close(b"408 Request Timeout", b"request not received in time\n")
        self.transport.close()

    def _answer_and_close(self, status: bytes, body: bytes) -> None:
        """A plain-text answer written straight to the socket (no request cycle is ready to
        send one), then the connection closed once it is flushed."""
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body)
        )
        self.transport.close()
