"""`rnnlab serve RUN`: an HTTP API over a run, with micro-batching, limits, metrics and a web page.

Every answer that is not 2xx has one JSON shape, `{"error": {"type", "message", "request_id"}}`, the framework's own
(404, 405, 413, validation) included; no traceback ever reaches a client. `/openapi.json` lists every status code
of every route and the limits of the request (serve/contract.py). The model loads in a background thread,
so `/health` answers at once and `/ready` turns 200 only after a warm-up batch.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from rnnlab.config import ServeLimits
from rnnlab.errors import UserError
from rnnlab.serve.batcher import Labelled, MicroBatcher, QueueFull
from rnnlab.serve.contract import ClassifyRequest, ClassifyResponse, Info, Status, classify_request_schema, error_responses
from rnnlab.serve.explain import Attribution
from rnnlab.serve.labeller import Labeller

API_KEY_ENV = "RNNLAB_API_KEY"
"""When set, `POST /v1/classify` needs `Authorization: Bearer <its value>` (a key never goes on a command line,
where `ps` shows it)."""


@dataclass
class Loaded:
    labeller: Labeller
    explainer: Callable[[list[list[int]]], list[Attribution]] | None
    info: dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


_STATUS_TYPES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                 413: "too_large", 422: "invalid", 429: "overloaded", 503: "not_ready", 504: "timeout"}  # fmt: skip


_PLAIN_MESSAGES = {413: "the request body is larger than the limit (see /v1/info)"}


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rnnlab_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("rnnlab_request_seconds", "Request latency", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))  # fmt: skip
        self.batch = Histogram("rnnlab_batch_size", "Texts per forward pass", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))  # fmt: skip
        self.batch_seconds = Histogram("rnnlab_batch_seconds", "Seconds per batch", registry=self.registry)
        self.queue = Gauge("rnnlab_queue_depth", "Texts waiting for the model", registry=self.registry)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch.observe(size)
        self.batch_seconds.observe(seconds)


class _State:
    """What the routes share: the loaded model (None until ready), its batcher and the metrics."""

    def __init__(self, limits: ServeLimits, api_key: str | None) -> None:
        self.limits, self.api_key = limits, api_key
        self.loaded: Loaded | None = None
        self.batcher: MicroBatcher | None = None
        self.load_error: str | None = None
        self.metrics = _Metrics()


def create_app(load: Callable[[], Loaded], limits: ServeLimits | None = None, *, api_key: str | None = None) -> FastAPI:
    """The app; `load` runs in a background thread at startup and its result serves once warmed up."""
    state = _State(limits or ServeLimits(), api_key)

    async def lifespan(app: FastAPI):
        thread = threading.Thread(target=_load, args=(state, load), name="rnnlab-load", daemon=True)
        thread.start()
        yield
        if state.batcher is not None:  # uvicorn has answered every accepted request; stop the model thread
            await asyncio.to_thread(state.batcher.close)

    # No /docs: FastAPI's page loads Swagger from a CDN and is blank offline. The schema stays at /openapi.json.
    app = FastAPI(title="rnnlab", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.rnnlab = state
    _add_error_handlers(app)
    _add_middleware(app, state)
    _add_routes(app, state)
    return app


def _load(state: _State, load: Callable[[], Loaded]) -> None:
    try:
        loaded = load()
        batcher = MicroBatcher(loaded.labeller, max_batch=state.limits.max_batch, max_wait_ms=state.limits.max_wait_ms,
                               max_queue=state.limits.max_queue, explainer=loaded.explainer,
                               on_batch=state.metrics.on_batch)  # fmt: skip
        loaded.labeller.predict_proba(["A warm-up review, so the first request does not pay for lazy setup."])
        batcher.start()
        state.batcher, state.loaded = batcher, loaded
    except Exception as error:  # reported by /ready; the process stays up to say why
        state.load_error = f"{type(error).__name__}: {error}"


def _add_routes(app: FastAPI, state: _State) -> None:
    @app.get("/health", response_model=Status)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", response_model=Status, responses=error_responses(503))
    def ready() -> dict[str, str]:
        _require_ready(state)
        return {"status": "ready"}

    @app.get("/v1/info", response_model=Info, responses=error_responses(503))
    def info() -> dict[str, Any]:
        loaded = _require_ready(state)
        return {**loaded.info, "limits": asdict(state.limits), "api_key_required": state.api_key is not None}

    # The body is parsed here, not by FastAPI, so that JSON is read whatever Content-Type a client sends (curl's
    # -d says form-urlencoded) and so that invalid JSON is a 400, not a validation error.
    body_schema = {"required": True, "content": {"application/json": {"schema": classify_request_schema(state.limits)}}}

    @app.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True,
              responses=error_responses(400, 401, 413, 422, 429, 500, 503, 504),
              openapi_extra={"requestBody": body_schema}, max_body_size=state.limits.max_body_bytes)  # fmt: skip
    async def classify(request: Request) -> dict[str, Any]:
        _check_key(state, request)
        loaded = _require_ready(state)
        body = _parse(await request.body())
        texts = _checked_texts(body.inputs, state.limits)
        if body.explain and loaded.explainer is None:
            raise ApiError(422, "invalid_request", "this run reads texts in windows (--chunks); it has no token highlights")
        try:
            labelled = await asyncio.wait_for(state.batcher.submit(texts, explain=body.explain), state.limits.timeout_s)
        except QueueFull as error:
            raise ApiError(429, "overloaded", f"the model is overloaded ({error}); retry shortly", {"Retry-After": "1"}) from None
        except TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {state.limits.timeout_s:g} s") from None
        return {"results": _results(labelled, loaded, body.top_k), "model": loaded.info["run"]}

    @app.get("/metrics", response_class=PlainTextResponse, responses={200: {"description": "Prometheus text format"}})
    def metrics() -> Response:
        state.metrics.queue.set(state.batcher.depth if state.batcher else 0)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    html = importlib.resources.files("rnnlab.serve").joinpath("page.html").read_text(encoding="utf-8")  # read once

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return html


def _require_ready(state: _State) -> Loaded:
    if state.loaded is None:
        why = f"the model failed to load ({state.load_error})" if state.load_error else "the model is still loading"
        raise ApiError(503, "not_ready", why, {"Retry-After": "5"} if not state.load_error else None)
    return state.loaded


def _check_key(state: _State, request: Request) -> None:
    if state.api_key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), state.api_key.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong API key (send Authorization: Bearer <key>)",
                       {"WWW-Authenticate": "Bearer"})  # fmt: skip


def _parse(raw: bytes) -> ClassifyRequest:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, "bad_request", f"the body is not valid JSON ({error})") from None
    try:
        return ClassifyRequest.model_validate(data)
    except ValidationError as error:
        raise ApiError(422, "invalid", _validation_message(error)) from None


def _validation_message(error: ValidationError) -> str:
    """The first problem, at its location in the body; `inputs` is a text or a list of texts, and pydantic's
    per-alternative messages for it are folded into one."""
    first = error.errors()[0]
    loc = [part for part in first["loc"] if part not in ("str", "list[str]")]
    if loc[:1] == ["inputs"] and first["type"] != "missing":
        item = next((e for e in error.errors() if isinstance(e["loc"][-1], int)), None)
        if item is None:
            return "body.inputs: should be a text or a list of texts"
        return f"body.inputs.{item['loc'][-1]}: {item['msg']}"
    return f"{'.'.join(['body', *map(str, loc)])}: {first['msg']}"


def _checked_texts(inputs: str | list[str], limits: ServeLimits) -> list[str]:
    texts = [inputs] if isinstance(inputs, str) else inputs
    where = (lambda i: "body.inputs") if isinstance(inputs, str) else (lambda i: f"body.inputs.{i}")
    if not texts:
        raise ApiError(422, "invalid", "body.inputs: give at least one text")
    if len(texts) > limits.max_inputs:
        raise ApiError(422, "invalid", f"body.inputs: {len(texts)} texts, more than the limit of {limits.max_inputs}")
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise ApiError(422, "invalid", f"{where(i)}: {len(text):,} characters, more than the limit of {limits.max_chars:,}")
        if not text.strip():
            raise ApiError(400, "bad_request", f"{where(i)}: the text is empty")
    return texts


def _results(labelled: Labelled, loaded: Loaded, top_k: int | None) -> list[dict[str, Any]]:
    names, limit = loaded.labeller.label_names, loaded.info["max_length"]
    rows = []
    for i, (probs, n_tokens) in enumerate(zip(labelled.probs, labelled.n_tokens)):
        ranked = sorted(zip(names, probs.tolist()), key=lambda pair: -pair[1])[:top_k]
        best = int(probs.argmax())
        row = {"index": i, "label": names[best], "score": round(float(probs[best]), 6),
               "scores": [{"label": n, "score": round(p, 6)} for n, p in ranked],
               "n_tokens": int(n_tokens), "truncated": bool(n_tokens > limit)}  # fmt: skip
        if labelled.attributions is not None:
            attribution = labelled.attributions[i]
            row["tokens"] = [{"token": t, "score": s} for t, s in zip(attribution.tokens, attribution.scores)]
        rows.append(row)
    return rows


def _error(status: int, kind: str, message: str, request: Request, headers: dict[str, str] | None = None) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    body = {"error": {"type": kind, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "X-Request-ID": request_id})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.kind, error.message, request, error.headers)

    @app.exception_handler(UserError)
    async def user_error(request: Request, error: UserError) -> JSONResponse:
        return _error(400, "bad_request", str(error), request)  # the CLI's one-line message, as a 400

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        kind = _STATUS_TYPES.get(error.status_code, "http_error")
        messages = {**_PLAIN_MESSAGES, 404: f"no route {request.url.path}",
                    405: f"{request.method} is not allowed on {request.url.path}"}  # fmt: skip
        message = messages.get(error.status_code, str(error.detail))
        return _error(error.status_code, kind, message, request, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        return _error(500, "internal", "the server failed on this request; see its log", request)


def _add_middleware(app: FastAPI, state: _State) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next):
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        start = time.perf_counter()
        response = await call_next(request)
        if response.status_code >= 400 and response.headers.get("content-type", "") != "application/json":
            # Starlette's own plain-text answers (the body limit's 413) take the one error shape too.
            response = _error(response.status_code, _STATUS_TYPES.get(response.status_code, "http_error"),
                              _PLAIN_MESSAGES.get(response.status_code, "the request failed"), request)  # fmt: skip
        route = request.scope.get("route")
        path = route.path if route is not None else "other"  # unknown paths share one label: bounded cardinality
        state.metrics.requests.labels(path, str(response.status_code)).inc()
        state.metrics.latency.labels(path).observe(time.perf_counter() - start)
        response.headers.setdefault("X-Request-ID", request.state.request_id)
        return response


def load_run(run: Path, *, engine: str = "torch", device: str = "cpu", bf16: bool = True, calibrated: bool = True) -> Loaded:
    """A run folder as the server serves it: its labeller, its explainer (always the torch model) and its info."""
    from rnnlab import runs
    from rnnlab.serve.explain import gradient_x_input
    from rnnlab.serve.predict import Predictor

    predictor = Predictor.load(run, device=device, bf16=bf16, calibrated=calibrated)
    labeller: Labeller = predictor
    if engine == "onnx":
        from rnnlab.serve.onnx_engine import OnnxPredictor

        labeller = OnnxPredictor(run, threads=None, calibrated=calibrated)
    cfg = runs.read_config(run)
    results_path = run / runs.RESULTS
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    info = {"run": run.name, "engine": engine, "encoder": cfg.encoder.encoder, "head": cfg.model.head,
            "labels": labeller.label_names, "max_length": labeller.encoder.max_length,
            "truncation": labeller.encoder.truncation, "temperature": labeller.temperature,
            "test_accuracy": results.get("test_accuracy")}  # fmt: skip
    windows = predictor.model.encoder.chunks > 1  # attributions are per token of one window
    return Loaded(labeller, None if windows else lambda ids: gradient_x_input(predictor.model, ids), info)


def serve(
    run: Path,
    *,
    engine: str,
    host: str,
    port: int,
    threads: int | None,
    bf16: bool = True,
    calibrated: bool = True,
    limits: ServeLimits | None = None,
) -> None:
    """Run the server until SIGINT/SIGTERM; on either, requests already accepted are answered first."""
    import torch
    import uvicorn

    from rnnlab import runs

    runs.require_finished(run)  # a wrong folder fails here, in one line, not later in a thread
    if threads:
        torch.set_num_threads(threads)
    limits = limits or ServeLimits()
    load = lambda: load_run(run, engine=engine, bf16=bf16, calibrated=calibrated)  # noqa: E731
    app = create_app(load, limits, api_key=os.environ.get(API_KEY_ENV) or None)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=int(limits.timeout_s) + 5)
