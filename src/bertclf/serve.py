"""`bertclf serve`: a packaged model over HTTP (FastAPI, run by uvicorn).

POST /v1/predict {"texts": [...]} -> {"predictions": [{"label", "probability", "probabilities"}]}
(a multi-label package: {"predictions": [{"labels": [...], "probabilities": {...}}]})
GET /healthz, GET /v1/metadata; the Open Inference Protocol (KServe v2) under /v2
(`inference_protocol`); GET /metrics for Prometheus (`serve_metrics`). The guards below the
routes (requests in flight, the API key, read and write deadlines) are in `http_guards`.

Requests that arrive while the model is busy are merged into one batch for its next call: a
single client waits for nothing, and under load the model sees larger batches.
"""

import asyncio
import json
import logging
import re
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi import Path as PathParameter
from fastapi.responses import JSONResponse, Response
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

from bertclf import __version__
from bertclf.errors import BertclfError
from bertclf.http_guards import BearerKey, ReadDeadlineProtocol, RequestsInFlight
from bertclf.inference_protocol import (
    ERROR_SCHEMA,
    ProtocolError,
    answer_schema,
    infer_schema,
    parse_infer,
    tensor,
    tensor_metadata,
)
from bertclf.serve_metrics import RequestMetrics, ServeMetrics


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


@dataclass(frozen=True)
class ExplainLimits:
    """`/v1/explain`'s own limits (`bertclf serve --explain`): an explanation costs `steps`
    forward and backward passes a text, so they are tighter than /v1/predict's, and one runs
    at a time (another gets 503 with Retry-After)."""

    max_texts: int  # texts in one request (more: 413)
    max_chars: int  # characters in one text (more: 422); a request's total: their product
    steps: int  # integrated gradients' steps: the default and the most a request may ask


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


def request_model(limits: Limits, text_pair: bool = False, **fields) -> type[BaseModel]:
    """The body of /v1/predict (with `fields`, of /v1/explain), with the limits on texts; a
    pair model's takes `text_pairs`, one second text per text."""
    text = Annotated[
        str, Field(strict=True, max_length=limits.max_chars), AfterValidator(_not_blank)
    ]
    texts = (list[text], Field(max_length=limits.max_texts))
    if not text_pair:
        return create_model(
            "PredictRequest", __config__=ConfigDict(extra="forbid"), texts=texts, **fields
        )
    return create_model(
        "PredictPairsRequest",
        __config__=ConfigDict(extra="forbid"),
        __validators__={"same_length": model_validator(mode="after")(_one_pair_per_text)},
        texts=texts,
        text_pairs=texts,
        **fields,
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
        self.on_call = None  # called with (texts, seconds) after each model call

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
            started = time.perf_counter()
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
            if self.on_call is not None:
                self.on_call(len(texts), time.perf_counter() - started)
            row = 0
            for request, start, end in batch:
                request.answers.append(probabilities[row : row + end - start])
                row += end - start
                if end == len(request.texts) and not request.done.done():
                    request.done.set_result(np.concatenate(request.answers))


class Refusal(Exception):
    """A request answered with an error: its status and detail (one line; /v1's 422 gives
    pydantic's list of problems), the limit that refused it and the texts it held, for
    /metrics."""

    def __init__(
        self,
        status: int,
        detail,
        limit: str | None = None,
        texts: int = 0,
        close: bool = False,
        retry: bool = False,
    ):
        super().__init__(detail)
        self.status, self.detail, self.limit, self.texts = status, detail, limit, texts
        # close: the body was not read to its end; say Connection: close, so that the server
        # closes the socket instead of reading and discarding the rest (2.2 GB in 10 s a
        # client). retry: a busy server's 503, with Retry-After.
        self.close, self.retry = close, retry

    def response(self, key: str) -> JSONResponse:
        """The answer, the detail under `key`: "detail" (/v1) or "error" (/v2)."""
        headers = {}
        if self.close:
            headers["Connection"] = "close"
        if self.retry:
            headers["Retry-After"] = "1"
        return JSONResponse({key: self.detail}, status_code=self.status, headers=headers or None)


def _validation_error(error: ValidationError, limits: Limits, texts: int) -> Refusal:
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    if any(p["type"] == "json_invalid" for p in problems):
        return Refusal(400, f"malformed JSON: {problems[0]['msg']}")
    if any(p["type"] == "too_long" and tuple(p["loc"]) == ("texts",) for p in problems):
        return Refusal(
            413, f"too many texts: at most {limits.max_texts} a request", "max_texts", texts
        )
    if any(p["type"] == "string_too_long" for p in problems):
        return Refusal(422, problems, "max_chars", texts)
    return Refusal(422, problems)


async def _read_body(request: Request, limit: int, untyped: bool = False) -> bytes:
    """A JSON body, read no further than `limit` bytes: a Refusal for another content type,
    a larger body or a client that hangs up. `untyped`: a body without a Content-Type is
    taken too (v2 clients such as tritonclient send none)."""
    # A JSON content type needs a CORS preflight, so a web page cannot post here by a form.
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not (untyped and not content_type):
        raise Refusal(415, "send the body as JSON, with Content-Type: application/json", close=True)
    too_large = Refusal(
        413, f"request body larger than {limit} bytes", "max_body_bytes", close=True
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:  # nobody is left to answer
        raise Refusal(400, "the client hung up before the body ended") from None
    return bytes(body)


def _texts_in(body: bytes) -> int:
    """How many texts a refused /v1 body holds, for /metrics (0 if it cannot tell)."""
    try:
        texts = json.loads(body).get("texts")
    except (ValueError, AttributeError, RecursionError):  # pydantic has refused it already
        return 0
    return len(texts) if isinstance(texts, list) else 0


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


def metadata(classifier, limits: Limits, explain: ExplainLimits | None = None) -> dict:
    """What /v1/metadata answers: read from the package's checked files at load."""
    package = classifier.package
    return {
        "explain": None if explain is None else asdict(explain),
        "task": classifier.label_map.task,
        "inputs": _input_names(classifier),
        "labels": classifier.classes_.tolist(),
        "model_card": _without_paths(package.card) if package.card is not None else None,
        "format_version": package.format_version,
        "encoder_family": package.family,
        "raw_text_serving": package.raw_text_serving,
        "runtime": {"name": classifier.runtime, "precision": classifier.precision},
        "versions": package.libraries,
        "limits": asdict(limits),
    }


def _input_names(classifier) -> list[str]:
    return ["text", "text_pair"] if classifier.text_pair else ["text"]


def model_metadata(classifier, name: str) -> dict:
    """The Open Inference Protocol's model metadata: the model's tensors, and in `parameters`
    the class names and what runs the model."""
    package = classifier.package
    specs = classifier.task.tensor_specs()
    return {
        "name": name,
        "versions": [package.manifest_sha256],
        "platform": f"bertclf_{classifier.runtime}",
        "inputs": [tensor_metadata(n, "BYTES", [-1]) for n in _input_names(classifier)],
        "outputs": [tensor_metadata(n, *spec) for n, spec in specs.items()],
        "parameters": {
            "task": classifier.label_map.task,
            "classes": classifier.classes_.tolist(),
            "format_version": package.format_version,
            "encoder_family": package.family,
            "raw_text_serving": package.raw_text_serving,
            "runtime": classifier.runtime,
            "precision": classifier.precision,
        },
    }


def _error_responses(reasons: dict[int, str], key: str) -> dict:
    schema = ERROR_SCHEMA if key == "error" else {
        "type": "object", "properties": {"detail": {}}, "required": ["detail"]}  # fmt: skip
    return {
        status: {"description": reason, "content": {"application/json": {"schema": schema}}}
        for status, reason in reasons.items()
    }


# what a key, a full server and a busy model answer on every route that needs a key
GUARDED = {401: "no API key, or another one (only with --api-key-file or BERTCLF_API_KEY)"}
BUSY = {503: "too many requests or texts waiting, or no answer within --request-timeout"}


def _body_reasons(limits: Limits) -> dict[int, str]:
    return {
        400: "malformed JSON, or the client hung up mid-body",
        408: "the request was not received within --read-timeout (text/plain)",
        413: f"over {limits.max_texts} texts, {limits.max_body_bytes} bytes or "
        f"{limits.max_request_chars} characters in all",
        415: "a body that is not Content-Type: application/json",
        422: "a text that is not a string, is empty, or has over the characters allowed; "
        "for a pair model, texts and text_pairs of different lengths",
        500: "the model call failed",
        **GUARDED,
        **BUSY,
    }


def _json_answer(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def body_schema(body_model: type[BaseModel]) -> dict:
    """The JSON Schema of a /v1 body, with what the model's validators add: a text is not
    empty, nor only spaces."""
    body = body_model.model_json_schema()
    for name in ("texts", "text_pairs"):
        if name in body["properties"]:
            body["properties"][name]["items"]["pattern"] = r"\S"
    return body


def predict_schema(body_model: type[BaseModel], classifier, limits: Limits) -> dict:
    """What /openapi.json says of /v1/predict: its body, its answers and their limits. The
    handler reads and checks the body itself (a FastAPI parameter would answer 422 where the
    docs promise 413 for too many texts), so the schema is declared, not inferred."""
    body = body_schema(body_model)
    prediction = classifier.task.answer_schema()
    answer = {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": prediction}},
        "required": ["predictions"],
    }
    return {
        "openapi_extra": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}}
        },
        "responses": {
            200: _json_answer("one prediction per text, in order", answer),
            **_error_responses(_body_reasons(limits), "detail"),
        },
    }


def infer_route_schema(classifier, limits: Limits) -> dict:
    """What /openapi.json says of the v2 infer routes (the body is read by the handler, as
    /v1/predict's is). JSON Schema cannot say that a tensor's shape counts its data, nor that
    a pair model's two inputs hold as many texts: those get 400."""
    body = infer_schema(
        _input_names(classifier), classifier.task.tensor_specs(), limits.max_texts,
        limits.max_chars,
    )  # fmt: skip
    reasons = _body_reasons(limits)
    reasons[400] += ", a tensor whose shape does not count its data, or inputs of different "
    reasons[400] += "lengths"
    reasons[404] = "another model name or version than the one served"
    reasons[415] = (
        "a Content-Type other than application/json (a body without one is taken as "
        "JSON), or Triton's binary tensor extension, which is not spoken"
    )
    return {
        "openapi_extra": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}}
        },
        "responses": {
            200: _json_answer("the outputs asked for, one row per text", answer_schema()),
            **_error_responses(reasons, "error"),
        },
    }


@dataclass
class Probes:
    """Liveness and readiness. Live: the worker that runs the model is alive. Ready: live, the
    model answered its warm-up batch, and the server is not draining (SIGTERM came)."""

    batcher: Batcher
    warmed: bool = False
    draining: bool = False
    warm_up_failed: str | None = None

    def not_live(self) -> str | None:
        return None if self.batcher.alive else "the model's worker has stopped"

    def not_ready(self) -> str | None:
        """Why the server is not ready, or None when it is."""
        if self.draining:
            return "the server is shutting down"
        if self.warm_up_failed is not None:
            return f"the warm-up batch failed: {self.warm_up_failed}"
        if not self.warmed:
            return "the model is warming up"
        return self.not_live()

    async def warm_up(self, items: list) -> None:
        """One batch through the batcher before the server says it is ready: the first call's
        one-time set-up is paid here, not by a client."""
        try:
            await self.batcher.outputs(items)
        except Exception as error:  # ready stays 503 and says why
            self.warm_up_failed = _one_line(error)
            LOG.error("the warm-up batch failed: %s", self.warm_up_failed)
            return
        self.warmed = True
        LOG.info("the model answered its warm-up batch: ready")


def _probe(reason: str | None, answer: dict) -> JSONResponse:
    """A probe's answer: 200 with `answer` (the protocol's `{"live": true}` form), or 503 with
    why not."""
    if reason is None:
        return JSONResponse(answer)
    return JSONResponse({"error": reason}, status_code=503)


def _probe_answers(key: str, *also: str) -> dict:
    schema = {"type": "object", "properties": {key: {"type": "boolean"}}, "required": [key]}
    for name in also:
        schema["properties"][name] = {"type": "string"}
    return {200: _json_answer("yes", schema), **_error_responses({503: "no: why"}, "error")}


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_model_name(name: str) -> None:
    """A name that can stand in a URL's path as it is."""
    if not MODEL_NAME.fullmatch(name):
        raise BertclfError(
            f"--model-name {name!r}: use letters, digits, '_', '.' and '-', starting with a "
            "letter or digit (at most 128)"
        )


def create_app(
    classifier,
    limits: Limits,
    allowed_hosts: list[str] | None = None,
    model_name: str = "package",
    api_key: str | None = None,
    explain: ExplainLimits | None = None,
) -> FastAPI:
    """The server: /v1 and the Open Inference Protocol's /v2 routes, the probes and /metrics,
    behind its guards; with `explain`, /v1/explain. `app.state.probes` is what SIGTERM's drain
    turns unready."""
    check_model_name(model_name)
    batcher = Batcher(classifier, limits.max_batch_texts, limits.max_queue_texts)
    probes = Probes(batcher)
    body_model = request_model(limits, classifier.text_pair)
    about = metadata(classifier, limits, explain)
    v2_metadata = model_metadata(classifier, model_name)
    version = classifier.package.manifest_sha256
    specs = classifier.task.tensor_specs()
    metrics = ServeMetrics(
        {
            "name": model_name,
            "task": classifier.label_map.task,
            "runtime": classifier.runtime,
            "precision": classifier.precision,
            "package_sha256": version,
            "format_version": str(classifier.package.format_version),
        },
        lambda: batcher.waiting_texts,
        lambda: probes.not_ready() is None,
    )
    batcher.on_call = metrics.model_call
    warm_up = ["warm-up"]
    warm_up_items = [("warm-up", "warm-up")] if classifier.text_pair else warm_up

    async def lifespan(app: FastAPI):
        worker = batcher.start()
        # listening starts as this yields: the warm-up runs behind it, ready says 503 till then
        warming = asyncio.create_task(probes.warm_up(warm_up_items))
        yield
        warming.cancel()
        worker.cancel()

    # no /docs: its page loads scripts from a CDN, and this server must work offline
    app = FastAPI(title="bertclf", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.probes = probes

    async def answer(request: Request, texts: list) -> np.ndarray:
        """The model's outputs for a request's checked texts, through the batcher; a Refusal
        for a request too costly, a full queue, a deadline passed, a failed call, or a client
        gone."""
        if not texts:
            return np.zeros((0, len(classifier.classes_)), dtype=np.float32)
        characters = sum(len(t) if isinstance(t, str) else len(t[0]) + len(t[1]) for t in texts)
        if characters > limits.max_request_chars:  # both texts of a pair count
            raise Refusal(
                413,
                f"too much text: at most {limits.max_request_chars} characters in all a "
                "request's texts; send fewer texts a request",
                "max_request_chars",
                len(texts),
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
            raise Refusal(400, "the client hung up before its answer")
        try:
            return work.result()
        except QueueFull:
            raise Refusal(
                503, "too many texts are waiting for the model", "max_queue_texts", len(texts),
                retry=True,
            ) from None  # fmt: skip
        except TimeoutError:
            raise Refusal(
                503, f"no answer within the request's deadline of {limits.request_timeout} s",
                "request_timeout", len(texts), retry=True,
            ) from None  # fmt: skip
        except ModelCallFailed as error:
            raise Refusal(500, f"the model call failed: {error}") from None

    def refused(refusal: Refusal, key: str) -> JSONResponse:
        if refusal.limit is not None:
            metrics.refused(refusal.limit, refusal.texts)
        return refusal.response(key)

    def check_model(name: str, asked_version: str | None = None) -> None:
        if name != model_name:
            raise Refusal(404, f"no model {name!r}: this server serves {model_name!r}")
        if asked_version is not None and asked_version != version:
            raise Refusal(
                404, f"no version {asked_version!r} of {model_name!r}: it serves {version}"
            )

    not_live = {"type": "object", "properties": {"status": {"type": "string"}}}

    @app.get("/healthz", responses={503: _json_answer("not live: the reason", not_live)})
    async def healthz():
        reason = probes.not_live()  # the process answers, but no request would be answered
        if reason is not None:
            return JSONResponse({"status": reason}, status_code=503)
        return {"status": "ok"}

    @app.get("/v1/metadata", responses=_error_responses(GUARDED, "detail"))
    async def get_metadata():
        return about

    @app.post("/v1/predict", **predict_schema(body_model, classifier, limits))
    async def predict(request: Request):
        body = b""
        try:
            body = await _read_body(request, limits.max_body_bytes)
            try:
                texts = request_items(body_model.model_validate_json(body))
            except ValidationError as error:
                raise _validation_error(error, limits, _texts_in(body)) from None
            outputs = await answer(request, texts)
        except Refusal as refusal:
            return refused(refusal, "detail")
        return {"predictions": classifier.task.answers(classifier.decide, outputs)}

    if explain is not None:
        add_explain_route(app, classifier, limits, explain, refused)

    # The Open Inference Protocol (KServe v2): each model route plain and versioned
    @app.get("/v2", responses=_error_responses(GUARDED, "error"))
    async def server_metadata():
        return {"name": "bertclf", "version": __version__, "extensions": []}

    @app.get("/v2/health/live", responses=_probe_answers("live"))
    async def live():
        return _probe(probes.not_live(), {"live": True})

    @app.get("/v2/health/ready", responses=_probe_answers("ready"))
    async def ready():
        return _probe(probes.not_ready(), {"ready": True})

    found = {**GUARDED, 404: "another model name or version than the one served"}
    model_probe = {**_probe_answers("ready", "name"), **_error_responses(found, "error")}
    model_answers = _error_responses(found, "error")
    infer_schema_ = infer_route_schema(classifier, limits)

    async def model_ready(request: Request, name: str, asked_version: str | None = None):
        try:
            check_model(name, asked_version)
        except Refusal as refusal:
            return refusal.response("error")
        return _probe(probes.not_ready(), {"name": model_name, "ready": True})

    async def get_model_metadata(request: Request, name: str, asked_version: str | None = None):
        try:
            check_model(name, asked_version)
        except Refusal as refusal:
            return refusal.response("error")
        return v2_metadata

    async def infer(request: Request, name: str, asked_version: str | None = None):
        try:
            check_model(name, asked_version)
            if "inference-header-content-length" in request.headers:
                raise Refusal(
                    415, "Triton's binary tensor extension is not spoken here: send JSON "
                    "tensors (tritonclient: binary_data=False)", close=True,
                )  # fmt: skip
            body = await _read_body(request, limits.max_body_bytes, untyped=True)
            try:
                parsed = parse_infer(
                    body, _input_names(classifier), list(specs), limits.max_texts,
                    limits.max_chars,
                )  # fmt: skip
            except ProtocolError as error:
                raise Refusal(error.status, error.message, error.limit, error.texts) from None
            outputs = await answer(request, parsed.texts)
        except Refusal as refusal:
            return refused(refusal, "error")
        tensors = classifier.task.tensors(classifier.decide, outputs)
        result = {"model_name": model_name, "model_version": version}
        if parsed.id is not None:
            result["id"] = parsed.id
        result["outputs"] = [tensor(n, specs[n][0], tensors[n]) for n in parsed.outputs]
        return result

    for prefix, takes_version in (("/v2/models/{name}", False),
                                  ("/v2/models/{name}/versions/{version}", True)):  # fmt: skip
        served = (model_name, version if takes_version else None)
        app.add_api_route(prefix, _model_route(get_model_metadata, *served), methods=["GET"],
                          responses=model_answers)  # fmt: skip
        app.add_api_route(f"{prefix}/ready", _model_route(model_ready, *served),
                          methods=["GET"], responses=model_probe)  # fmt: skip
        app.add_api_route(f"{prefix}/infer", _model_route(infer, *served), methods=["POST"],
                          **infer_schema_)  # fmt: skip

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"description": "Prometheus' text format",
                         "content": {"text/plain": {"schema": {"type": "string"}}}},
                   **_error_responses(GUARDED, "detail")},
    )  # fmt: skip
    async def prometheus_metrics():
        exposition, content_type = metrics.exposition()
        return Response(exposition, media_type=content_type)

    # the guards, innermost first: Host names, the API key, requests in flight, and the
    # metrics, which count what each refused
    if allowed_hosts:  # a page in a browser cannot reach the server through another name
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    if api_key is not None:
        app.add_middleware(BearerKey, key=api_key)
    app.add_middleware(RequestsInFlight, limit=limits.limit_concurrency)
    app.add_middleware(RequestMetrics, metrics=metrics, routes=app.routes)
    return app


def add_explain_route(app: FastAPI, classifier, limits: Limits, explain: ExplainLimits, refused):
    """POST /v1/explain {"texts": [...], "label": optional, "steps": optional} ->
    {"explanations": [...]}, each as `Classifier.explain` gives it; one at a time, within
    `explain`'s limits."""
    explain_limits = replace(
        limits,
        max_texts=explain.max_texts,
        max_chars=explain.max_chars,
        max_request_chars=explain.max_texts * explain.max_chars,
    )
    classes = () if classifier.task.name == "regression" else tuple(classifier.classes_.tolist())
    label = Literal[classes] | None if classes else None  # a regression model has no label
    body_model = request_model(
        explain_limits,
        classifier.text_pair,
        label=(label, None),
        steps=(int | None, Field(None, ge=1, le=explain.steps)),
    )
    running = asyncio.Lock()
    reasons = _body_reasons(explain_limits)
    reasons[422] += f"; a label the model does not have, or steps over {explain.steps}"
    reasons[503] = "an explanation is running (one at a time)"
    schema = body_schema(body_model)
    answer = {"type": "object", "properties": {"explanations": {"type": "array"}}}

    @app.post(
        "/v1/explain",
        openapi_extra={"requestBody": {"required": True,
                                       "content": {"application/json": {"schema": schema}}}},
        responses={200: _json_answer("one explanation per text, in order", answer),
                   **_error_responses(reasons, "detail")},
    )  # fmt: skip
    async def explain_texts(request: Request):
        try:
            body = await _read_body(request, limits.max_body_bytes)
            try:
                parsed = body_model.model_validate_json(body)
            except ValidationError as error:
                raise _validation_error(error, explain_limits, _texts_in(body)) from None
            if not parsed.texts:
                return {"explanations": []}
            if running.locked():
                raise Refusal(503, "an explanation is running: one at a time", "explain_busy",
                              len(parsed.texts), retry=True)  # fmt: skip
            async with running:
                try:
                    results = await asyncio.to_thread(
                        classifier.explain, parsed.texts, getattr(parsed, "text_pairs", None),
                        parsed.label, parsed.steps or explain.steps,
                    )  # fmt: skip
                except BertclfError as error:
                    raise Refusal(422, str(error)) from None
        except Refusal as refusal:
            return refused(refusal, "detail")
        return {"explanations": results}


def resident_megabytes() -> float | None:
    """This process's resident memory (Linux), or None where /proc does not say."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) / 1024 if found else None


def _model_route(handler, model_name: str, version: str | None):
    """A v2 model route's endpoint, with a version in its path or without. The schema lists
    the name and version served (any other gets 404, from the handler)."""
    name_type = Annotated[str, PathParameter(json_schema_extra={"enum": [model_name]})]
    if version is None:

        async def endpoint(request: Request, name: name_type):
            return await handler(request, name)

        return endpoint
    version_type = Annotated[str, PathParameter(json_schema_extra={"enum": [version]})]

    async def versioned(request: Request, name: name_type, version: version_type):
        return await handler(request, name, version)

    return versioned


def draining_server(config, probes: Probes, drain_seconds: float, received: list[int]):
    """uvicorn's server with a drain: at SIGTERM, ready turns 503 at once and requests are
    still served for `drain_seconds`, so that a load balancer stops sending; then uvicorn's
    graceful shutdown begins. uvicorn alone stops listening at SIGTERM. A second SIGTERM, or
    Ctrl-C (SIGINT), shuts down at once. Every exit signal is appended to `received`."""
    import uvicorn

    server = uvicorn.Server(config)
    shut_down = server.handle_exit

    def handle_exit(sig, frame) -> None:
        received.append(sig)
        if sig != signal.SIGTERM or probes.draining or drain_seconds <= 0:
            probes.draining = True
            return shut_down(sig, frame)
        probes.draining = True
        LOG.info("SIGTERM: not ready; serving %g s more, then shutting down", drain_seconds)
        timer = threading.Timer(drain_seconds, shut_down, (sig, frame))
        timer.daemon = True
        timer.start()

    server.handle_exit = handle_exit  # what uvicorn installs as the signal handler
    return server


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
    model_name: str | None = None,
    api_key: str | None = None,
    drain_seconds: float = 5.0,
    explain: ExplainLimits | None = None,
) -> None:
    """Load the package, then listen at once: ready (/v2/health/ready) answers 503 until the
    model has answered a warm-up batch, which runs in the background."""
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from bertclf.classifier import Classifier

    model_name = model_name or package.resolve().name
    check_model_name(model_name)  # before the package loads: a mistake is told at once
    classifier = Classifier.load(
        package, expect_sha256=expect_sha256, runtime=runtime, precision=precision
    )
    print(f"{package}: {classifier.describe()}", flush=True)
    if explain is not None:  # the TensorFlow functions, loaded and traced now (a warm-up
        # explanation), so that no client pays for it, and their cost told at once
        before = resident_megabytes()
        classifier.explain("warm-up", "warm-up" if classifier.text_pair else None, steps=2)
        after = resident_megabytes()
        cost = "" if before is None else f", {after - before:+.0f} MB resident ({after:.0f} MB)"
        print(f"{package}: /v1/explain on, on TensorFlow{cost}", flush=True)
    app = create_app(classifier, limits, allowed_hosts, model_name, api_key, explain)
    # bertclf's own lines (a failed model call, a client gone) as uvicorn's are written
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["bertclf"] = {"handlers": ["default"], "level": "INFO"}
    deadlines = {"read_timeout": limits.read_timeout, "write_timeout": limits.write_timeout}
    protocol = type("Protocol", (ReadDeadlineProtocol,), deadlines)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        http=protocol,
        log_config=log_config,
        timeout_graceful_shutdown=limits.timeout_graceful_shutdown,
    )
    received: list[int] = []
    server = draining_server(config, app.state.probes, drain_seconds, received)
    server.run()
    if signal.SIGINT in received:
        # Ctrl-C exits 130. uvicorn re-raises the signal after its graceful shutdown, but inside
        # asyncio's runner, which turns it into a cancellation of a task that may already have
        # finished, and then exits 0 (the fresh-clone suite saw exit 0 twice in a row).
        raise KeyboardInterrupt
    if not server.started:
        sys.exit(3)  # uvicorn's exit code when the server could not start (the port is taken)
