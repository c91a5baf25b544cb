"""Idempotent requests with Stripe's semantics.

The same key with the same request returns the first response; with a different request it is
refused (``idempotency_key_reused``); while the first is still running, a second gets
``idempotency_request_in_flight``. The key is claimed in its own short transaction, and the
response is stored in the *same* transaction as the work it describes, so a crash can never leave
work done without its response, nor a response without its work. A request that failed with a
client error keeps that answer; one that failed inside the platform, or was told to come back
later (``rate_limited``, a factor locked for now), releases the key, so the client's retry runs
it afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from zeropay.domain.errors import (
    DomainError,
    FactorLocked,
    IdempotencyKeyReused,
    IdempotencyRequestInFlight,
    InvariantViolation,
    RateLimited,
)
from zeropay.services.context import AppContext, UnitOfWork

T = TypeVar("T")
Hook = Callable[[UnitOfWork, Any], None]
Rendered = tuple[int, Any]


@dataclass(frozen=True)
class IdempotentRequest:
    scope: str  # whose key it is: a merchant or a payer, so keys never collide across clients
    key: str
    fingerprint: bytes


def fingerprint(method: str, path: str, body: Any) -> bytes:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    replayed: bool


def run(
    ctx: AppContext,
    request: IdempotentRequest | None,
    call: Callable[[Hook | None], T],
    *,
    render: Callable[[T], Rendered],
    render_error: Callable[[DomainError], Rendered],
) -> Answer:
    if request is None:
        status, body = render(call(None))
        return Answer(status, body, replayed=False)
    durations = ctx.durations
    stored = ctx.run(
        lambda uow: uow.idempotency.claim(
            scope=request.scope,
            key=request.key,
            fingerprint=request.fingerprint,
            now=ctx.now(),
            keep=timedelta(seconds=durations.idempotency_keep_s),
            lease=timedelta(seconds=durations.idempotency_lease_s),
        )
    )
    if stored is not None:
        if stored.fingerprint != request.fingerprint:
            raise IdempotencyKeyReused(
                "this idempotency key was used with a different request", key=request.key[:64]
            )
        if stored.status != "completed":
            raise IdempotencyRequestInFlight(
                "a request with this idempotency key is still in progress", key=request.key[:64]
            )
        stored_status, stored_body = stored.response_status, stored.response_body
        if stored_status is None or stored_body is None:
            raise InvariantViolation("a completed idempotency key lacks its response")
        return Answer(stored_status, json.loads(stored_body), replayed=True)

    rendered: list[Rendered] = []

    def store(uow: UnitOfWork, result: Any) -> None:
        rendered.clear()
        rendered.append(render(result))
        status, body = rendered[0]
        uow.idempotency.complete(
            scope=request.scope, key=request.key, status=status, body=json.dumps(body)
        )

    try:
        call(store)
    except DomainError as exc:
        if _retry_later(exc):
            ctx.run(lambda uow: uow.idempotency.release(scope=request.scope, key=request.key))
            raise
        status, body = render_error(exc)
        ctx.run(
            lambda uow: uow.idempotency.complete(
                scope=request.scope, key=request.key, status=status, body=json.dumps(body)
            )
        )
        raise
    except BaseException:
        ctx.run(lambda uow: uow.idempotency.release(scope=request.scope, key=request.key))
        raise
    status, body = rendered[0]
    return Answer(status, body, replayed=False)


def _retry_later(error: DomainError) -> bool:
    """An answer that tells the client to send the same request again later is not the request's
    final answer: kept, it would be replayed to that retry for as long as the key lives."""
    if isinstance(error, RateLimited):
        return True
    # A lock with an end (CryptogramLocked for one: 60 s, doubling) lifts by itself; a permanent
    # one is final until the payer acts, and a retry of the same request changes nothing.
    return isinstance(error, FactorLocked) and error.details.get("permanent") is False
