"""The FastAPI application: middleware, error mapping, operations endpoints."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy as email_policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import anyio.to_thread
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zeropay import __version__
from zeropay.adapters.sms import DevSmsSink
from zeropay.api.auth_routes import router as auth_router
from zeropay.api.fraud_routes import router as fraud_router
from zeropay.api.instrument_routes import router as instrument_router
from zeropay.api.onboarding_routes import router as onboarding_router
from zeropay.api.operator_routes import router as operator_router
from zeropay.api.pages import SecurityHeaders
from zeropay.api.pages import router as pages_router
from zeropay.api.privacy_routes import router as privacy_router
from zeropay.api.problems import problem, problem_body, render_error
from zeropay.api.recovery_routes import router as recovery_router
from zeropay.api.routes import router
from zeropay.api.vault_routes import router as vault_router
from zeropay.api.webhook_routes import router as webhook_router
from zeropay.domain import bounds
from zeropay.domain.errors import ZeroPayError
from zeropay.services import jobs

if TYPE_CHECKING:
    from zeropay.bootstrap import Container

log = structlog.get_logger("zeropay.http")

REQUESTS = Counter("zeropay_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("zeropay_http_request_seconds", "HTTP latency", ["method", "route"])
JOB_TICK_S = 5.0


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


class RequestContext:
    """Outermost: request id, refusal of control characters in the URL, security headers,
    metrics and one log line per request. Pure ASGI: Starlette's ``BaseHTTPMiddleware`` costs
    a task and a stream per request, measurable on the payment path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                request_id = value[:64].decode("latin-1")
        if not request_id or not request_id.isprintable():
            request_id = uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # No id, cursor or query value of ours holds a control character; a NUL would otherwise
        # reach PostgreSQL, which refuses it in text (a 500, where the caller deserves a 4xx).
        query = unquote_to_bytes(scope.get("query_string", b"")).decode("latin-1")
        if _has_control(scope["path"]):
            await self._early(scope, send, 404, "not_found", "no such resource", request_id)
            return
        if _has_control(query):
            await self._early(
                scope,
                send,
                422,
                "invalid_input",
                "a query parameter contains a control character",
                request_id,
            )
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                headers["Cache-Control"] = "no-store"
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # The app's own handler has already answered with a 500 problem and logged it.
            if not response_started:
                raise
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                route=route,
                status=status,
                ms=round(elapsed * 1000, 2),
            )

    async def _early(
        self, scope: Scope, send: Send, status: int, code: str, detail: str, request_id: str
    ) -> None:
        response = problem(
            status,
            problem_body(status, code, detail),
            {"X-Request-Id": request_id, "Cache-Control": "no-store"},
        )
        await response(scope, _empty_receive, send)


class BodyLimit:
    """Refuse bodies over the limit before they are read into memory, with or without a
    Content-Length header (a chunked upload is counted as it arrives)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (a chunked upload): read it here, up to the limit, then replay it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = problem_body(413, "body_too_large", f"the request body is over {self.limit} bytes")
        response = problem(413, body)
        await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


def configure_logging(level: str) -> None:
    logging.basicConfig(format="%(message)s", level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        cache_logger_on_first_use=False,  # so a later configure (a test, a reload) takes effect
    )


def _job_loop(container: Container, stop: threading.Event) -> None:
    owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    jobs.register(container.ctx)
    while not stop.wait(JOB_TICK_S):
        if container.vault is not None and container.vault.sealed:
            continue  # every job needs keys; they run once custodians unseal
        try:
            jobs.run_due(container.ctx, owner=owner)
        except Exception:  # the loop must survive a database restart
            log.exception("job_loop_failed")


def create_app(container: Container) -> FastAPI:
    settings = container.settings
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:

        # Each request runs its transaction on a worker thread. More threads than the database
        # pool only queue for connections, and many threads fighting for the GIL stretch the
        # time a transaction holds its row locks, so the count is kept small.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        stop = threading.Event()
        worker = None
        if settings.jobs_enabled:
            worker = threading.Thread(target=_job_loop, args=(container, stop), daemon=True)
            worker.start()
        if container.vault is not None:
            if container.vault.sealed:
                log.warning(
                    "vault_sealed: requests that need a key answer 503 until key custodians "
                    "unseal it (zeropay vault status; POST /v1/vault/unseal)"
                )
            container.vault.start()
        yield
        if container.vault is not None:
            container.vault.stop()
        stop.set()
        if worker is not None:
            worker.join(timeout=10)

    # Swagger UI served from files shipped in the package: nothing loads from a CDN.
    app = FastAPIOffline(
        title="ZeroPay",
        redoc_url=None,
        version=__version__,
        description="Micropayments with strong customer authentication built in.",
        lifespan=lifespan,
    )
    app.state.container = container
    app.include_router(router)
    app.include_router(auth_router)
    app.include_router(operator_router)
    app.include_router(fraud_router)
    app.include_router(instrument_router)
    app.include_router(privacy_router)
    app.include_router(onboarding_router)
    app.include_router(recovery_router)
    app.include_router(vault_router)
    app.include_router(webhook_router)
    app.include_router(pages_router)

    @app.exception_handler(ZeroPayError)
    async def domain_error(_request: Request, exc: ZeroPayError) -> JSONResponse:
        status, body = render_error(exc)
        if status >= 500:
            log.error("internal_error", error=type(exc).__name__, code=exc.code, exc_info=exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem(status, body, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette answers 400 itself when a body cannot even be decoded (invalid UTF-8).
        codes = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        return problem(exc.status_code, problem_body(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
        return problem(
            500, problem_body(500, "internal_error", "the request could not be completed")
        )

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        """The database answers; the process can take traffic."""
        try:
            with container.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            return problem(503, problem_body(503, "not_ready", "the database does not answer"))
        return JSONResponse({"status": "ready"})

    if settings.dev_mail_dir is not None:
        mail_dir = settings.dev_mail_dir

        @app.get("/dev/mail", tags=["development"], include_in_schema=False)
        def dev_mail() -> dict[str, Any]:
            """Development only: what the local SMTP server received, newest first."""
            out = []
            files = sorted(mail_dir.glob("*.eml"), reverse=True) if mail_dir.exists() else []
            for path in files[: bounds.PAGE_SIZE_MAX]:
                message = BytesParser(policy=email_policy.default).parsebytes(path.read_bytes())
                body = message.get_body(preferencelist=("plain",))
                out.append(
                    {
                        "to": message["To"],
                        "subject": message["Subject"],
                        "body": body.get_content() if body is not None else "",
                    }
                )
            return {"data": out}

    if settings.dev_sms_file is not None:
        sink = DevSmsSink(settings.dev_sms_file)

        @app.get("/dev/sms", tags=["development"], include_in_schema=False)
        def dev_sms() -> dict[str, Any]:
            """Development only: the text messages the dev sink kept, newest first."""
            return {"data": sink.recent()}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics() -> PlainTextResponse:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            data = generate_latest(registry)
        else:
            data = generate_latest()
        return PlainTextResponse(data, media_type=CONTENT_TYPE_LATEST)

    return SecurityHeaders(  # type: ignore[return-value]
        RequestContext(BodyLimit(app, settings.body_bytes_max))
    )


VALIDATION_CODES = {
    "json_invalid": ("malformed_json", 400),
    "extra_forbidden": ("unknown_field", 422),
    "missing": ("missing_field", 422),
}


def validation_problem(errors: Any) -> JSONResponse:
    items = []
    code, status = "invalid_input", 422
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        kind = err.get("type", "")
        mapped = VALIDATION_CODES.get(kind)
        if mapped:
            code, status = mapped
        elif loc and loc[0] == "amount":
            code = "invalid_amount"
        elif loc and loc[0] == "currency":
            code = "unknown_currency"
        items.append({"field": ".".join(loc), "type": kind, "message": err.get("msg", "")})
    first = items[0] if items else {"field": "", "message": "invalid request"}
    detail = f"{first['field'] or 'body'}: {first['message']}"
    return problem(status, problem_body(status, code, detail, errors=items[:20]))
