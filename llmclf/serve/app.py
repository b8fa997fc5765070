"""The FastAPI app: one `llmclf.Classifier` behind ``/predict``, ``/info``, ``/health``.

Endpoints
---------
``GET /``          a small HTML page: paste a text, see its label and probabilities
``GET /health``    ``{"status": "ok"}`` once the model is loaded
``GET /info``      labels, backbone, pooling, versions, the model's sha256 and the limits
``POST /predict``  ``{"texts": [...]}`` -> ``{"predictions": [{label, score, probabilities,
                   tokens_used, tokens_dropped}]}``
``GET /docs``      the OpenAPI page (schema at ``/openapi.json``)

Errors are JSON ``{"detail": "one line"}``: 422 for malformed JSON or wrong types (with the
validation ``errors`` too), 413 for more texts than ``max_batch``, a text longer than
``max_chars``, or a body larger than those two limits allow. ``/openapi.json`` states the limits
(``maxItems``, ``maxLength``) and every status each endpoint returns, so a request valid by the
schema is accepted.

Inference runs in a worker thread (the event loop keeps answering ``/health`` meanwhile), one
request at a time under a lock: PyTorch's own threads parallelise each batch, and requests never
share or interleave a forward pass.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import LlmclfError, UnfinishedRunWarning
from ..inference import Classifier, unfinished_message
from . import CONFIG_ENV, DEFAULT_MAX_BATCH, DEFAULT_MAX_CHARS, EXTRA_HINT, ServeConfig

try:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, create_model
    from starlette.concurrency import run_in_threadpool
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # the optional extra is not installed
    raise LlmclfError(f"llmclf serve needs FastAPI ({exc}); run: {EXTRA_HINT}") from None

# JSON can spend up to 12 bytes on one character ("\ud83d\ude00"); allow that plus framing.
_BYTES_PER_CHAR = 12
_BYTES_PER_TEXT = 16
_BYTES_SLACK = 1024


# ----- request and response bodies (these are also the OpenAPI schema) ------------------------
class PredictRequest(BaseModel):
    """The texts to classify; the response keeps their order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["printer is on fire", "reset my password"]}]},
    )
    texts: list[str] = Field(description="Texts to classify, at most --max-batch of them.")


class PredictionOut(BaseModel):
    """One text's prediction."""

    label: str = Field(description="The most probable label.")
    score: float = Field(description="The probability of that label.")
    probabilities: dict[str, float] = Field(description="Every label's probability.")
    tokens_used: int = Field(description="Tokens of the text the model read.")
    tokens_dropped: int = Field(
        description="Tokens cut off the end of a text longer than the model reads (0: none)."
    )


class PredictResponse(BaseModel):
    """One prediction per input text, in input order."""

    predictions: list[PredictionOut]


class Limits(BaseModel):
    """Request limits; requests over them get 413."""

    max_batch: int = Field(description="Most texts in one request.")
    max_chars: int = Field(description="Longest text, in characters.")
    max_body_bytes: int = Field(description="Largest request body, in bytes.")


class InfoResponse(BaseModel):
    """What is being served (``complete`` is false for a run whose training never finished)."""

    labels: list[str]
    backbone: str
    pooling: str
    trainable: str
    llmclf_version: str = Field(description="The llmclf serving the model.")
    trained_with: str = Field(description="The llmclf that trained it.")
    model_sha256: str | None = Field(description="sha256 of model.safetensors (null if unknown).")
    limits: Limits
    complete: bool = Field(True, description="False when the run's training never finished.")
    warnings: list[str] = Field(
        default_factory=list, description="What a client should know about the model served."
    )


class HealthResponse(BaseModel):
    status: str = "ok"


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong, in one line.")


class ValidationErrorResponse(ErrorResponse):
    errors: list[dict[str, Any]] = Field(
        description="Every validation error, as FastAPI lists them."
    )


def _request_model(max_batch: int, max_chars: int) -> type[PredictRequest]:
    """`PredictRequest` whose schema states this server's limits (over them: 413, not 422)."""
    limits = {"maxItems": max_batch, "items": {"type": "string", "maxLength": max_chars}}
    field = Field(
        description=f"Texts to classify: at most {max_batch} (--max-batch), each at most "
        f"{max_chars} characters (--max-chars).",
        json_schema_extra=limits,  # documented only: the handler answers 413 over them
    )
    return create_model("PredictRequest", __base__=PredictRequest, texts=(list[str], field))


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses an endpoint can return, with their bodies, for the OpenAPI schema."""
    known: dict[int, dict[str, Any]] = {
        413: {
            "model": ErrorResponse,
            "description": "Over --max-batch, --max-chars or the body size.",
        },
        422: {"model": ValidationErrorResponse, "description": "Malformed JSON or wrong types."},
    }
    return {code: known[code] for code in codes}


# ----- the app ------------------------------------------------------------------------------
def create_app(
    model: Classifier | str | Path,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_chars: int = DEFAULT_MAX_CHARS,
    device: str = "auto",
    run_dir: str | Path | None = None,
) -> FastAPI:
    """Build the app around a loaded classifier, or load one from a run directory.

    ``run_dir`` names the directory a pre-loaded ``model`` came from, so ``/info`` can report
    the sha256 of its ``model.safetensors``; with a path as ``model`` it is that path, and
    ``device`` says where to load it.
    """
    # Validates the limits (and device) the same way the CLI's options are validated.
    ServeConfig(run=str(run_dir or model), max_batch=max_batch, max_chars=max_chars, device=device)
    if isinstance(model, Classifier):
        classifier = model
    else:
        run_dir = Path(model)
        classifier = Classifier.load(run_dir, device=device)
    fingerprint = model_sha256(Path(run_dir)) if run_dir is not None else None
    max_body = max_batch * (max_chars * _BYTES_PER_CHAR + _BYTES_PER_TEXT) + _BYTES_SLACK
    info = _info(
        classifier,
        fingerprint,
        Limits(max_batch=max_batch, max_chars=max_chars, max_body_bytes=max_body),
        run_dir,
    )
    app = FastAPI(
        title="llmclf",
        version=__version__,
        summary=f"Text classifier ({info.backbone}); labels: {', '.join(info.labels)}.",
    )
    app.state.classifier = classifier
    app.state.info = info
    app.add_middleware(BodyLimit, max_bytes=max_body, hint=_body_hint(max_batch, max_chars))
    app.add_exception_handler(RequestValidationError, _validation_error)
    _add_routes(app, classifier, info, max_batch=max_batch, max_chars=max_chars)
    return app


def _add_routes(
    app: FastAPI, classifier: Classifier, info: InfoResponse, *, max_batch: int, max_chars: int
) -> None:
    """The page, ``/health``, ``/info`` and ``/predict`` (its body schema states the limits)."""
    page = resources.files(__package__).joinpath("index.html").read_text(encoding="utf-8")
    lock = threading.Lock()

    def run_model(texts: list[str]) -> list[dict[str, Any]]:
        with lock:  # one forward pass at a time; torch's threads parallelise inside it
            return [p.to_dict() for p in classifier.predict(texts)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", response_model=HealthResponse, responses=_responses(413))
    async def health() -> HealthResponse:
        """Liveness: the model is loaded and the server answers."""
        return HealthResponse()

    @app.get("/info", response_model=InfoResponse, responses=_responses(413))
    async def get_info() -> InfoResponse:
        """What is being served: labels, backbone, versions, model fingerprint, limits."""
        return info

    async def predict(body: PredictRequest) -> dict[str, Any]:
        """Classify ``texts``: one prediction per text, in the same order."""
        texts = body.texts
        if len(texts) > max_batch:
            raise HTTPException(
                413, f"{len(texts)} texts in one request; the limit is {max_batch} (--max-batch)"
            )
        for i, text in enumerate(texts):
            if len(text) > max_chars:
                raise HTTPException(
                    413,
                    f"texts[{i}] has {len(text)} characters; "
                    f"the limit is {max_chars} (--max-chars)",
                )
        if not texts:
            return {"predictions": []}
        return {"predictions": await run_in_threadpool(run_model, texts)}

    # the body's model is built for these limits, so the schema states them
    predict.__annotations__["body"] = _request_model(max_batch, max_chars)
    app.post("/predict", response_model=PredictResponse, responses=_responses(413, 422))(predict)


def app_from_environment() -> FastAPI:
    """uvicorn factory for ``--workers`` > 1: each worker process loads the model itself."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise LlmclfError(f"{CONFIG_ENV} is not set; start the server with llmclf serve")
    config = ServeConfig.from_json(text)
    if not os.environ.get("OMP_NUM_THREADS"):  # share the cores between the workers
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
    with warnings.catch_warnings():  # `serve` said it once, not once per worker
        warnings.simplefilter("ignore", UnfinishedRunWarning)
        return create_app(
            config.run, max_batch=config.max_batch, max_chars=config.max_chars, device=config.device
        )


def model_sha256(run_dir: Path) -> str:
    """sha256 of ``run_dir/model.safetensors``, read in 1 MiB chunks."""
    from ..runs.checkpoint import MODEL_FILE

    digest = hashlib.sha256()
    with open(run_dir / MODEL_FILE, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _info(
    classifier: Classifier, fingerprint: str | None, limits: Limits, run_dir: str | Path | None
) -> InfoResponse:
    base = classifier.info()
    notes = (
        []
        if classifier.complete
        else [unfinished_message(run_dir or "the run", classifier.manifest)]
    )
    return InfoResponse(
        labels=base["labels"],
        backbone=base["backbone"],
        pooling=base["pooling"],
        trainable=base["trainable"],
        llmclf_version=__version__,
        trained_with=base["llmclf_version"],
        model_sha256=fingerprint,
        limits=limits,
        complete=classifier.complete,
        warnings=notes,
    )


# ----- errors ----------------------------------------------------------------------------
async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with a one-line ``detail`` (and the full list under ``errors``)."""
    assert isinstance(exc, RequestValidationError)
    # Without "input": it can be the whole request body, which need not travel back.
    errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
    messages = [_describe(error) for error in errors[:3]]
    if len(errors) > 3:
        messages.append(f"and {len(errors) - 3} more")
    return JSONResponse(
        {"detail": "; ".join(messages), "errors": jsonable_encoder(errors)}, status_code=422
    )


def _describe(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        where = f" at character {loc[0]}" if loc else ""
        return f"request body is not valid JSON{where}: {reason}".rstrip(": ")
    if error.get("type") == "model_attributes_type" and not loc:  # not a JSON object at all
        return (
            'request body must be a JSON object like {"texts": ["..."]}, '
            "sent with Content-Type: application/json"
        )
    if error.get("type") == "missing" and loc == ["texts"]:
        return 'texts: field required; send {"texts": ["..."]}'
    field = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in loc).lstrip(".")
    return f"{field or 'body'}: {error.get('msg', 'invalid')}"


def _body_hint(max_batch: int, max_chars: int) -> str:
    return f"--max-batch {max_batch} texts of --max-chars {max_chars} characters"


class BodyLimit:
    """Reject request bodies over ``max_bytes`` with 413, before they are read whole."""

    def __init__(self, app: ASGIApp, max_bytes: int, hint: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.hint = hint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self._message()}, 413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body that keeps coming
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body is over {self.max_bytes} bytes, the most {self.hint} can take"


__all__ = ["app_from_environment", "create_app", "model_sha256"]
