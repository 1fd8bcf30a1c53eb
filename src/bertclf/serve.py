"""`bertclf serve`: a packaged model over HTTP (FastAPI, run by uvicorn).

POST /v1/predict {"texts": [...]} -> {"predictions": [{"label", "probability", "probabilities"}]}
(a multi-label package: {"predictions": [{"labels": [...], "probabilities": {...}}]})
GET /healthz, GET /v1/metadata.

Requests that arrive while the model is busy are merged into one batch for its next call: a
single client waits for nothing, and under load the model sees larger batches.
"""

import asyncio
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import h11
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from bertclf.errors import BertclfError


@dataclass(frozen=True)
class Limits:
    """The server's limits; their defaults are `bertclf serve`'s options."""

    max_texts: int  # texts in one request (more: 413)
    max_chars: int  # characters in one text (more: 422)
    max_body_bytes: int  # request body (more: 413)
    max_batch_texts: int  # texts in one model call, shared by the requests waiting; 1: no merging
    max_request_chars: int  # characters of all a request's texts: its cost (413)
    max_queue_texts: int  # texts waiting for the model (more: 503 with Retry-After)
    request_timeout: float  # seconds from a request's arrival to its answer (503)
    read_timeout: float  # seconds to send a request's headers and body (408, closed)
    write_timeout: float  # seconds a client may leave an answer unread (closed)
    limit_concurrency: int  # requests in flight at once (more: 503); idle connections don't count
    timeout_graceful_shutdown: float  # after SIGTERM, before open requests are dropped

    def __post_init__(self) -> None:
        if self.max_queue_texts < self.max_texts:  # a full request could never be queued
            raise BertclfError(
                f"--max-queue-texts {self.max_queue_texts} is below --max-texts "
                f"{self.max_texts}: a request of {self.max_texts} texts would get 503 forever; "
                "give --max-queue-texts at least --max-texts"
            )


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


def request_model(limits: Limits, text_pair: bool = False) -> type[BaseModel]:
    """The body of /v1/predict, with the limits on texts; a pair model's takes `text_pairs`,
    one second text per text."""
    text = Annotated[
        str, Field(strict=True, max_length=limits.max_chars), AfterValidator(_not_blank)
    ]
    texts = (list[text], Field(max_length=limits.max_texts))
    if not text_pair:
        return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"), texts=texts)
    return create_model(
        "PredictPairsRequest",
        __config__=ConfigDict(extra="forbid"),
        __validators__={"same_length": model_validator(mode="after")(_one_pair_per_text)},
        texts=texts,
        text_pairs=texts,
    )


def _one_pair_per_text(body):
    if len(body.texts) != len(body.text_pairs):
        raise ValueError(
            f"{len(body.texts)} texts and {len(body.text_pairs)} text_pairs: give one second "
            "text per text"
        )
    return body


def request_items(body) -> list:
    """The examples of a checked body: its texts, or for pairs (text, text_pair) tuples."""
    pairs = getattr(body, "text_pairs", None)
    return body.texts if pairs is None else list(zip(body.texts, pairs, strict=True))


class QueueFull(Exception):
    """More texts wait for the model than the server accepts."""


LOG = logging.getLogger("bertclf.serve")


class ModelCallFailed(Exception):
    """A model call raised: its requests get 500 with this one line."""


def _one_line(error: BaseException) -> str:
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


@dataclass
class _Request:
    """A request waiting in the batcher: its texts, the next one not yet in a model call, and
    the answers so far."""

    texts: list  # texts, or (text, text_pair) tuples
    done: asyncio.Future
    next: int = 0
    answers: list = field(default_factory=list)

    @property
    def left(self) -> int:
        return len(self.texts) - self.next


class Batcher:
    """Runs the classifier on the texts of every request waiting, in one call, in a thread.

    A call holds at most `max_batch_texts` texts, shared equally among the requests waiting
    (a share a short request leaves goes to the others), so a small request is answered by
    the next call however large the requests beside it: a one-text request waited 10.9 s
    behind a 256-text one, when each call took one request's texts in the order they came.
    Requests whose caller stopped waiting (cancelled: out of time, or gone) are dropped with
    their texts not yet run. At most `max_queue_texts` texts wait.
    """

    def __init__(self, classifier, max_batch_texts: int, max_queue_texts: int | None = None):
        self.classifier = classifier
        self.max_batch_texts = max_batch_texts
        self.max_queue_texts = max_queue_texts
        self.waiting: list[_Request] = []  # in the order they came
        self.waiting_texts = 0  # texts not yet in a model call
        self.arrived = asyncio.Event()
        self.worker: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        self.worker = asyncio.create_task(self.run())
        return self.worker

    @property
    def alive(self) -> bool:
        """Whether the worker runs: liveness (/healthz) is the process answering and this."""
        return self.worker is not None and not self.worker.done()

    async def outputs(self, texts: list) -> np.ndarray:
        """The classifier's outputs for `texts` (a pair model's: (text, text_pair) tuples)."""
        if self.max_queue_texts is not None and (
            self.waiting_texts + len(texts) > self.max_queue_texts
        ):
            raise QueueFull
        request = _Request(texts, asyncio.get_running_loop().create_future())
        self.waiting.append(request)
        self.waiting_texts += len(texts)
        self.arrived.set()
        try:
            return await request.done
        finally:  # out of time or cancelled: its texts not yet run are dropped
            request.done.cancel()

    def _drop_cancelled(self) -> None:
        for request in [r for r in self.waiting if r.done.done()]:
            self.waiting.remove(request)
            self.waiting_texts -= request.left

    def _next_batch(self) -> list[tuple[_Request, int, int]]:
        """The next call's slices (request, start, end): each waiting request gets an equal
        share of what is left of the call, the requests with the fewest texts first, so that
        a share one does not need goes to the others; the slices keep the requests' order.
        With more requests than the call holds texts, the oldest get a text each (by size,
        a large request could wait for ever behind a stream of small ones)."""
        self._drop_cancelled()
        waiting, budget = self.waiting, self.max_batch_texts
        if len(waiting) > budget:
            takes = {id(request): 1 for request in waiting[:budget]}
        else:
            takes = {}
            for position, request in enumerate(sorted(waiting, key=lambda r: r.left)):
                share = budget // (len(waiting) - position)  # >= 1 while budget >= requests
                takes[id(request)] = min(request.left, share)
                budget -= takes[id(request)]
        batch = []
        for request in list(waiting):
            take = takes.get(id(request), 0)
            if take:
                batch.append((request, request.next, request.next + take))
                request.next += take
                self.waiting_texts -= take
            if not request.left:
                self.waiting.remove(request)  # every text is in a call: it waits for answers
        return batch

    def run_model(self, items: list) -> np.ndarray:
        if items and isinstance(items[0], tuple):
            texts, pairs = (list(side) for side in zip(*items, strict=True))
            return self.classifier.outputs(texts, pairs)
        return self.classifier.outputs(items)

    async def run(self) -> None:
        while True:
            if not self.waiting:
                self.arrived.clear()
                await self.arrived.wait()
            batch = self._next_batch()
            if not batch:
                continue
            texts = [text for request, start, end in batch for text in request.texts[start:end]]
            try:
                probabilities = await asyncio.to_thread(self.run_model, texts)
            except asyncio.CancelledError:
                raise  # the server stops
            except BaseException as error:  # pyo3's PanicException is a BaseException too
                # every request of the call gets one line, the traceback is logged once, and
                # the loop goes on
                LOG.error("a model call failed", exc_info=error)
                failed = ModelCallFailed(_one_line(error))
                for request, _, _ in batch:
                    if not request.done.done():
                        request.done.set_exception(failed)
                self._drop_cancelled()  # those requests' texts not yet run go too
                continue
            row = 0
            for request, start, end in batch:
                request.answers.append(probabilities[row : row + end - start])
                row += end - start
                if end == len(request.texts) and not request.done.done():
                    request.done.set_result(np.concatenate(request.answers))


def _error(status: int, detail, close: bool = False) -> JSONResponse:
    """`close`: the body was not read to its end; say Connection: close, so that the server
    closes the socket instead of reading and discarding the rest (2.2 GB in 10 s a client)."""
    headers = {"Connection": "close"} if close else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _busy(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})


def _validation_error(error: ValidationError, limits: Limits) -> JSONResponse:
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    if any(p["type"] == "json_invalid" for p in problems):
        return _error(400, f"malformed JSON: {problems[0]['msg']}")
    if any(p["type"] == "too_long" and tuple(p["loc"]) == ("texts",) for p in problems):
        return _error(413, f"too many texts: at most {limits.max_texts} a request")
    return _error(422, problems)


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The body; BodyTooLarge once it exceeds `limit` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


async def _until_disconnected(request: Request) -> None:
    """Returns when the client hangs up: once the body is read, the next message uvicorn
    gives a request is http.disconnect (the socket closed, or cut at a deadline)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _without_paths(value):
    """The value with every absolute path cut to its last part: metadata must not show the
    build machine's folders."""
    if isinstance(value, dict):
        return {key: _without_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_paths(item) for item in value]
    if isinstance(value, str) and re.match(r"^(/|[A-Za-z]:\\)\S", value):
        path = value.split()[0]
        return re.split(r"[\\/]", path)[-1] + value[len(path) :]
    return value


def metadata(classifier, limits: Limits) -> dict:
    """What /v1/metadata answers: read from the package's checked files at load."""
    package = classifier.package
    return {
        "task": classifier.label_map.task,
        "inputs": ["text", "text_pair"] if classifier.text_pair else ["text"],
        "labels": classifier.classes_.tolist(),
        "model_card": _without_paths(package.card) if package.card is not None else None,
        "format_version": package.format_version,
        "runtime": {"name": classifier.runtime, "precision": classifier.precision},
        "versions": package.libraries,
        "limits": asdict(limits),
    }


def predict_schema(body_model: type[BaseModel], classifier, limits: Limits) -> dict:
    """What /openapi.json says of /v1/predict: its body, its answers and their limits. The
    handler reads and checks the body itself (a FastAPI parameter would answer 422 where the
    docs promise 413 for too many texts), so the schema is declared, not inferred."""
    body = body_model.model_json_schema()
    for name in ("texts", "text_pairs"):
        if name in body["properties"]:  # not empty, not only spaces
            body["properties"][name]["items"]["pattern"] = r"\S"
    prediction = classifier.task.answer_schema()
    answer = {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": prediction}},
        "required": ["predictions"],
    }
    error = {"type": "object", "properties": {"detail": {}}, "required": ["detail"]}
    reasons = {
        400: "malformed JSON, or the client hung up mid-body",
        408: "the request was not received within --read-timeout (text/plain)",
        413: f"over {limits.max_texts} texts, {limits.max_body_bytes} bytes or "
        f"{limits.max_request_chars} characters in all",
        415: "a body that is not Content-Type: application/json",
        422: "a text that is not a string, is empty, or has over the characters allowed; "
        "for a pair model, texts and text_pairs of different lengths",
        500: "the model call failed",
        503: "too many requests or texts waiting, or no answer within --request-timeout",
    }
    responses = {200: {"description": "one prediction per text, in order", "content": {
        "application/json": {"schema": answer}}}}  # fmt: skip
    for status, reason in reasons.items():
        responses[status] = {
            "description": reason,
            "content": {"application/json": {"schema": error}},
        }
    return {
        "openapi_extra": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}}
        },
        "responses": responses,
    }


def create_app(classifier, limits: Limits, allowed_hosts: list[str] | None = None) -> FastAPI:
    batcher = Batcher(classifier, limits.max_batch_texts, limits.max_queue_texts)
    body_model = request_model(limits, classifier.text_pair)
    about = metadata(classifier, limits)

    async def lifespan(app: FastAPI):
        worker = batcher.start()
        yield
        worker.cancel()

    # no /docs: its page loads scripts from a CDN, and this server must work offline
    app = FastAPI(title="bertclf", lifespan=lifespan, docs_url=None, redoc_url=None)
    if allowed_hosts:  # a page in a browser cannot reach the server through another name
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.get("/healthz")
    async def healthz():
        if not batcher.alive:  # the process answers, but no request would ever be answered
            return JSONResponse({"status": "the model's worker has stopped"}, status_code=503)
        return {"status": "ok"}

    @app.get("/v1/metadata")
    async def get_metadata():
        return about

    @app.post("/v1/predict", **predict_schema(body_model, classifier, limits))
    async def predict(request: Request):
        # A JSON content type needs a CORS preflight, so a web page cannot post here by a form.
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(
                415, "send the body as JSON, with Content-Type: application/json", close=True
            )
        try:
            body = await _read_body(request, limits.max_body_bytes)
        except BodyTooLarge:
            return _error(
                413, f"request body larger than {limits.max_body_bytes} bytes", close=True
            )
        except ClientDisconnect:  # nobody is left to answer
            return _error(400, "the client hung up before the body ended")
        try:
            texts = request_items(body_model.model_validate_json(body))
        except ValidationError as error:
            return _validation_error(error, limits)
        if not texts:
            return {"predictions": []}
        characters = sum(len(t) if isinstance(t, str) else len(t[0]) + len(t[1]) for t in texts)
        if characters > limits.max_request_chars:  # both texts of a pair count
            return _error(
                413,
                f"too much text: at most {limits.max_request_chars} characters in all a "
                "request's texts; send fewer texts a request",
            )
        work = asyncio.ensure_future(
            asyncio.wait_for(batcher.outputs(texts), limits.request_timeout)
        )
        hangup = asyncio.ensure_future(_until_disconnected(request))
        await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
        hangup.cancel()
        if not work.done():  # nobody is left to answer: its texts leave the queue unrun
            work.cancel()
            LOG.info("a client hung up before its answer: its %d texts are dropped", len(texts))
            return _error(400, "the client hung up before its answer")
        try:
            probabilities = work.result()
        except QueueFull:
            return _busy("too many texts are waiting for the model")
        except TimeoutError:
            return _busy(f"no answer within the request's deadline of {limits.request_timeout} s")
        except ModelCallFailed as error:
            return _error(500, f"the model call failed: {error}")
        return {"predictions": classifier.task.answers(classifier.decide, probabilities)}

    return app


class RequestsInFlight:
    """ASGI middleware: at most `limit` HTTP requests in flight; more get 503 with
    Retry-After. uvicorn's own limit_concurrency counts open connections too, so idle
    keep-alive sockets starved the server: 40 answers out of 37,473 requests with 300 of them."""

    def __init__(self, app, limit: int):
        self.app, self.limit, self.active = app, limit, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            body = b'{"detail":"too many requests at once"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", b"1"),
                    ],
                }
            )
            return await send({"type": "http.response.body", "body": body})
        self.active += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.active -= 1


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


def serve(
    package: Path,
    host: str,
    port: int,
    limits: Limits,
    allowed_hosts: list[str] | None = None,
    expect_sha256: str | None = None,
    runtime: str = "auto",
    precision: str = "auto",
    access_log: bool = True,
) -> None:
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from bertclf.classifier import Classifier

    classifier = Classifier.load(
        package, expect_sha256=expect_sha256, runtime=runtime, precision=precision
    )
    print(f"{package}: {classifier.describe()}", flush=True)
    warm_up = ["warm-up"]  # the first call's one-time set-up, before any request
    classifier.outputs(warm_up, warm_up if classifier.text_pair else None)
    # bertclf's own lines (a failed model call, a client gone) as uvicorn's are written
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["bertclf"] = {"handlers": ["default"], "level": "INFO"}
    deadlines = {"read_timeout": limits.read_timeout, "write_timeout": limits.write_timeout}
    protocol = type("Protocol", (ReadDeadlineProtocol,), deadlines)
    uvicorn.run(
        RequestsInFlight(create_app(classifier, limits, allowed_hosts), limits.limit_concurrency),
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        http=protocol,
        log_config=log_config,
        timeout_graceful_shutdown=limits.timeout_graceful_shutdown,
    )
