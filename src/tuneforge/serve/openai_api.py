"""The OpenAI-compatible HTTP API: app factory, routes, authentication, limits and error bodies.

``create_app`` builds one FastAPI app around one :class:`ServedModels`: its own batching engine
(started and stopped with the app), its own Prometheus registry, its feedback log. Route handlers
render the prompt, check the limits, hand a :class:`Job` to the engine and relay its events, either
as one JSON body or as a server-sent event stream in OpenAI's chunk format. Handlers are ``async``
and never generate themselves: the engine thread does, so the event loop keeps accepting requests
(and answering 429 when the queue is full) while a batch runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tuneforge.serve.engine import BatchEngine, QueueFull
from tuneforge.serve.feedback import JsonlLog, RecentCompletions, feedback_record, prompt_record
from tuneforge.serve.http_errors import APIError, error_body
from tuneforge.serve.jobs import Delta, Failed, Finished, Job, Sampling
from tuneforge.serve.limits import ServeLimits, check_lengths, check_stop
from tuneforge.serve.metrics import UNKNOWN_MODEL, ServeMetrics
from tuneforge.serve.openai_schema import ChatCompletionRequest, CompletionRequest, FeedbackRequest
from tuneforge.serve.responses import chat_response, chunk, completion_response, sse, usage, usage_chunk
from tuneforge.serve.served import ServedModels
from tuneforge.serve.shadow import ShadowComparer, check_shadow


@dataclass
class _Prepared:
    """A validated request, ready for the engine."""

    kind: str  # "chat" or "completion"
    name: str
    adapter: str | None
    prompt_ids: list[int]
    prompt_text: str
    max_tokens: int
    body: ChatCompletionRequest | CompletionRequest


class ServerState:
    """Everything the routes share; one per app."""

    def __init__(
        self, served: ServedModels, limits: ServeLimits, api_key: str | None, feedback_log: Path, prompt_log: Path | None
    ) -> None:
        self.served, self.limits, self.api_key = served, limits, api_key or None
        self.metrics = ServeMetrics()
        activate = served.activate if served.multi_adapter else None
        self.engine = BatchEngine(served.model, served.tokenizer, limits, self.metrics, activate)
        self.feedback = JsonlLog(feedback_log)
        self.prompts = JsonlLog(prompt_log) if prompt_log else None
        self.recent = RecentCompletions()
        self.created = int(time.time())
        self.positions = getattr(getattr(served.model, "config", None), "max_position_embeddings", None)
        self.shadow: ShadowComparer | None = None

    def resolve(self, request: Request, model: str) -> tuple[str, str | None]:
        """The served name and adapter for a request's ``model`` (404 for any other name)."""
        if model not in self.served.names:
            raise APIError(404, f"the model {model!r} does not exist; this server serves: {', '.join(self.served.names)}", param="model", code="model_not_found")
        request.state.model = model
        return model, self.served.names[model]

    def count(self, request: Request, status: int) -> None:
        model = getattr(request.state, "model", UNKNOWN_MODEL)
        self.metrics.requests.labels(model, request.url.path, str(status)).inc()


def create_app(
    served: ServedModels,
    *,
    limits: ServeLimits | None = None,
    api_key: str | None = None,
    feedback_log: str | Path = "tuneforge-feedback.jsonl",
    prompt_log: str | Path | None = None,
    shadow: str | None = None,
    shadow_log: str | Path | None = None,
) -> FastAPI:
    """The app for ``served``; run it with uvicorn (``tuneforge serve`` does). ``shadow`` names a served
    adapter that also answers every other request off the response path (serve/shadow.py), logged to
    ``shadow_log`` (default: ``shadow.jsonl`` beside the feedback log)."""
    state = ServerState(served, limits or ServeLimits(), api_key, Path(feedback_log), Path(prompt_log) if prompt_log else None)
    if shadow is not None:
        log = Path(shadow_log) if shadow_log else Path(feedback_log).parent / "shadow.jsonl"
        state.shadow = ShadowComparer(shadow, check_shadow(served.names, shadow), log, state.metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.engine.start()
        yield
        state.engine.stop()

    app = FastAPI(title="tuneforge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tuneforge = state
    _add_error_handlers(app, state)
    app.add_middleware(BodyLimit, max_bytes=state.limits.max_body_bytes, state=state)
    _add_routes(app, state)
    return app


def _add_routes(app: FastAPI, state: ServerState) -> None:
    auth = [Depends(_authorizer(state))]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", dependencies=auth)
    async def models(request: Request) -> dict[str, Any]:
        state.count(request, 200)
        data = [{"id": n, "object": "model", "created": state.created, "owned_by": "tuneforge"} for n in state.served.names]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        name, adapter = state.resolve(request, body.model)
        ids, text = _chat_prompt(state.served.tokenizer, body)
        max_tokens = body.max_completion_tokens or body.max_tokens or state.limits.default_max_tokens
        return await _complete(state, request, _Prepared("chat", name, adapter, ids, text, max_tokens, body))

    @app.post("/v1/completions", dependencies=auth)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        name, adapter = state.resolve(request, body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise APIError(400, "send one prompt per request (a list of several prompts is not supported)", param="prompt")
        ids = list(state.served.tokenizer(prompts[0])["input_ids"])
        return await _complete(state, request, _Prepared("completion", name, adapter, ids, prompts[0], body.max_tokens, body))

    @app.post("/v1/feedback", dependencies=auth)
    async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        model = state.recent.model_of(body.id)
        if model is None:
            raise APIError(404, f"no completion with id {body.id!r} was served here (recently)", param="id", code="completion_not_found")
        request.state.model = model
        state.feedback.append(feedback_record(body.id, model, body.rating, body.comment))
        state.metrics.feedback.labels(model, body.rating).inc()
        state.count(request, 200)
        return {"id": body.id, "object": "feedback", "status": "recorded"}

    @app.get("/metrics", dependencies=auth)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _chat_prompt(tokenizer: Any, body: ChatCompletionRequest) -> tuple[list[int], str]:
    """Token ids of the conversation with the tokenizer's own chat template, and the last user message.

    ``sanitize_control_tokens``: a user who writes ``<|im_end|>`` gets those characters, not a forged
    turn boundary (as in ``tuneforge chat``).
    """
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    try:
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, sanitize_control_tokens=True)
    except Exception as exc:  # noqa: BLE001 - a template that rejects these messages is the client's 400
        raise APIError(400, f"the model's chat template cannot render these messages: {exc}", param="messages") from None
    ids = encoded["input_ids"]
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return list(ids[0] if ids and isinstance(ids[0], list) else ids), last_user


async def _complete(state: ServerState, request: Request, p: _Prepared) -> Response:
    """Check limits, queue the job, and answer with one body or an event stream."""
    check_lengths(len(p.prompt_ids), p.max_tokens, state.limits, state.positions)
    stop = check_stop(p.body.stop, state.limits)
    cid = f"{'chatcmpl' if p.kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    sampling = Sampling(p.body.temperature, p.body.top_p, p.body.seed)
    job = Job(cid, p.name, p.adapter, p.prompt_ids, p.max_tokens, sampling, stop, _sink(loop, events))
    try:
        state.engine.submit(job)
    except QueueFull:
        raise APIError(429, f"the server is busy ({state.limits.queue_size} requests waiting); retry shortly", code="queue_full") from None
    state.recent.add(cid, p.name)
    if state.shadow is not None:
        state.shadow.mirror(job, state.engine.submit_shadow)
    if state.prompts is not None:
        state.prompts.append(prompt_record(cid, p.name, p.prompt_text, len(p.prompt_ids)))
    if p.body.stream:
        state.count(request, 200)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_stream(state, request, p, job, events), media_type="text/event-stream", headers=headers)
    text: list[str] = []
    while True:
        event = await events.get()
        if isinstance(event, Delta):
            text.append(event.text)
        elif isinstance(event, Failed):
            raise RuntimeError(event.message)
        else:
            break
    _finished(state, request, p, job, event)
    state.count(request, 200)
    build = chat_response if p.kind == "chat" else completion_response
    use = usage(event.prompt_tokens, event.completion_tokens)
    return JSONResponse(build(cid, int(time.time()), p.name, event.text, event.finish_reason, use))


async def _stream(state: ServerState, request: Request, p: _Prepared, job: Job, events: asyncio.Queue) -> AsyncIterator[str]:
    """SSE chunks as the engine produces text; a client that goes away cancels its row of the batch."""
    created = int(time.time())
    include_usage = bool(p.body.stream_options and p.body.stream_options.include_usage)
    try:
        if p.kind == "chat":
            yield sse(chunk("chat", job.id, created, p.name, "", None, first=True))
        while True:
            event = await events.get()
            if isinstance(event, Delta):
                yield sse(chunk(p.kind, job.id, created, p.name, event.text, None))
            elif isinstance(event, Failed):
                yield sse(error_body(500, event.message))
                break
            else:
                _finished(state, request, p, job, event)
                yield sse(chunk(p.kind, job.id, created, p.name, None, event.finish_reason))
                if include_usage:
                    yield sse(usage_chunk(p.kind, job.id, created, p.name, usage(event.prompt_tokens, event.completion_tokens)))
                break
        yield sse("[DONE]")
    finally:
        job.cancelled.set()  # no-op when finished; frees the batch row when the client disconnected


def _sink(loop: asyncio.AbstractEventLoop, events: asyncio.Queue):
    """Deliver engine events to the request's coroutine; after shutdown (loop closed) drop them, so a
    late token never raises inside the engine thread."""

    def put(event: Any) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:
            pass

    return put


def _finished(state: ServerState, request: Request, p: _Prepared, job: Job, event: Finished) -> None:
    state.metrics.completed(p.name, event.text, event.prompt_tokens, event.completion_tokens)
    if state.shadow is not None:
        state.shadow.client_done(job.id, event.text, event.finish_reason)
    state.metrics.latency.labels(p.name, request.url.path).observe(time.perf_counter() - job.submitted)


def _authorizer(state: ServerState):
    """A dependency that enforces ``Authorization: Bearer KEY`` when the server has a key."""

    async def authorize(request: Request) -> None:
        if state.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), state.api_key.encode()):
            raise APIError(401, "invalid or missing API key: send Authorization: Bearer <key>", code="invalid_api_key")

    return authorize


def _add_error_handlers(app: FastAPI, state: ServerState) -> None:
    """Every error leaves as an OpenAI-style body; client mistakes as 4xx, never as 5xx."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        state.count(request, exc.status)
        headers = {"Retry-After": "1"} if exc.status == 429 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        state.count(request, 400)
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        if first.get("type") == "extra_forbidden":
            message = f"{param}: this server does not support this parameter"
        return JSONResponse(error_body(400, message, param=param), status_code=400)

    for status in (404, 405):

        @app.exception_handler(status)
        async def http_error(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            state.count(request, status)
            return JSONResponse(error_body(status, getattr(exc, "detail", None) or "not found"), status_code=status)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        state.count(request, 500)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}: {exc}"), status_code=500)


class BodyLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` with 413, before it is parsed."""

    def __init__(self, app: Any, max_bytes: int, state: ServerState) -> None:
        self.app, self.max_bytes, self.state = app, max_bytes, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Any, send: Any) -> None:
        self.state.metrics.requests.labels(UNKNOWN_MODEL, scope.get("path", ""), "413").inc()
        body = error_body(413, f"the request body is over {self.max_bytes} bytes", code="request_too_large")
        await JSONResponse(body, status_code=413)(scope, receive, send)
