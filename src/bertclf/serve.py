"""`bertclf serve`: a packaged model over HTTP (FastAPI, run by uvicorn).

POST /v1/predict {"texts": [...]} -> {"predictions": [{"label", "probability", "probabilities"}]}
GET /healthz, GET /v1/metadata.

Requests that arrive while the model is busy are merged into one batch for its next call: a
single client waits for nothing, and under load the model sees larger batches.
"""

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from bertclf.package import MANIFEST


@dataclass(frozen=True)
class Limits:
    """The server's limits; their defaults are `bertclf serve`'s options."""

    max_texts: int  # texts in one request (more: 413)
    max_chars: int  # characters in one text (more: 422)
    max_body_bytes: int  # request body (more: 413)
    max_batch_texts: int  # texts merged into one model call; 1 turns merging off


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


def request_model(limits: Limits) -> type[BaseModel]:
    """The body of /v1/predict, with the limits on texts."""
    text = Annotated[
        str, Field(strict=True, max_length=limits.max_chars), AfterValidator(_not_blank)
    ]
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        texts=(list[text], Field(max_length=limits.max_texts)),
    )


class Batcher:
    """Runs the classifier on the texts of every request waiting, in one call, in a thread."""

    def __init__(self, classifier, max_batch_texts: int):
        self.classifier = classifier
        self.max_batch_texts = max_batch_texts
        self.queue: asyncio.Queue = asyncio.Queue()

    async def predict_proba(self, texts: list[str]) -> np.ndarray:
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, done))
        return await done

    async def run(self) -> None:
        while True:
            waiting = [await self.queue.get()]
            size = len(waiting[0][0])
            while not self.queue.empty() and size < self.max_batch_texts:
                waiting.append(self.queue.get_nowait())
                size += len(waiting[-1][0])
            texts = [text for request, _ in waiting for text in request]
            try:
                probabilities = await asyncio.to_thread(self.classifier.predict_proba, texts)
            except Exception as error:  # every waiting request gets the error, the loop goes on
                for _, done in waiting:
                    done.set_exception(error)
                continue
            start = 0
            for request, done in waiting:
                done.set_result(probabilities[start : start + len(request)])
                start += len(request)


def _error(status: int, detail) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _validation_error(error: ValidationError, limits: Limits) -> JSONResponse:
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    if any(p["type"] == "json_invalid" for p in problems):
        return _error(400, f"malformed JSON: {problems[0]['msg']}")
    if any(p["type"] == "too_long" and tuple(p["loc"]) == ("texts",) for p in problems):
        return _error(413, f"too many texts: at most {limits.max_texts} a request")
    return _error(422, problems)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds `limit` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            return None
    return bytes(body)


def metadata(package: Path, classifier, limits: Limits) -> dict:
    manifest = json.loads((package / MANIFEST).read_text(encoding="utf-8"))
    card = package / "model_card.json"
    return {
        "labels": classifier.classes_.tolist(),
        "model_card": json.loads(card.read_text(encoding="utf-8")) if card.is_file() else None,
        "format_version": manifest["format_version"],
        "versions": manifest["libraries"],
        "limits": asdict(limits),
    }


def create_app(package: Path, classifier, limits: Limits) -> FastAPI:
    batcher = Batcher(classifier, limits.max_batch_texts)
    body_model = request_model(limits)
    about = metadata(package, classifier, limits)
    classes = classifier.classes_.tolist()

    async def lifespan(app: FastAPI):
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()

    # no /docs: its page loads scripts from a CDN, and this server must work offline
    app = FastAPI(title="bertclf", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/v1/metadata")
    async def get_metadata():
        return about

    @app.post("/v1/predict")
    async def predict(request: Request):
        body = await _read_body(request, limits.max_body_bytes)
        if body is None:
            return _error(413, f"request body larger than {limits.max_body_bytes} bytes")
        try:
            texts = body_model.model_validate_json(body).texts
        except ValidationError as error:
            return _validation_error(error, limits)
        probabilities = await batcher.predict_proba(texts) if texts else np.zeros((0, 0))
        return {
            "predictions": [
                {
                    "label": classes[int(row.argmax())],
                    "probability": float(row.max()),
                    "probabilities": dict(zip(classes, map(float, row), strict=True)),
                }
                for row in probabilities
            ]
        }

    return app


def serve(package: Path, host: str, port: int, limits: Limits) -> None:
    import uvicorn

    from bertclf.classifier import Classifier

    classifier = Classifier.load(package)
    classifier.predict_proba(["warm-up"])  # the first call's one-time set-up, before any request
    uvicorn.run(create_app(package, classifier, limits), host=host, port=port, log_level="info")
