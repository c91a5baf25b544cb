"""RFC 9457 problem details: the one table from errors to HTTP statuses and stable codes."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from zeropay.domain import errors as e

PROBLEM_JSON = "application/problem+json"

# Most specific first: the first class an error is an instance of decides its status.
STATUS: tuple[tuple[type[e.ZeroPayError], int], ...] = (
    (e.IdempotencyRequestInFlight, 409),
    (e.IdempotencyKeyReused, 422),
    (e.InsufficientFunds, 402),
    (e.FundingDeclined, 402),
    (e.AuthenticationFailed, 401),
    (e.NotAuthenticated, 401),
    (e.Forbidden, 403),
    (e.FactorLocked, 423),
    (e.RateLimited, 429),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.LimitExceeded, 422),
    (e.InvalidInput, 422),
    (e.DomainError, 400),
    (e.InfrastructureError, 503),
    (e.ConfigurationError, 500),
    (e.InvariantViolation, 500),
)

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    402: "Payment failed",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    423: "Locked",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}

# Details that are safe to show a client. Anything else in an error's details stays in logs.
PUBLIC_DETAILS = frozenset(
    {
        # A risk challenge names the factors and the flow that asks for them; the reasons and
        # score of a risk decision are not sent to whoever asked (they would teach an attacker
        # the rules); the user reads them at GET /v1/me/risk, operators in the console API.
        "factors",
        "flow",
        "field",
        "reason",
        "currency",
        "limit_minor",
        "spent_minor",
        "refundable_minor",
        "payment_status",
        "event",
        "scope",
        "expected",
        "got",
        "held",
        "until",
        "permanent",
        "errors",
        "next",
        "flow_id",
        "attempts_left",
        "retry_after_s",
        "age_s_max",
        "step",
        "action",  # what a recovery's cooling-off period held back
        "resend",  # an expired recovery link may ask for a fresh one
    }
)


def status_of(error: e.ZeroPayError) -> int:
    for cls, status in STATUS:
        if isinstance(error, cls):
            return status
    return 500


def problem_body(status: int, code: str, detail: str, /, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://zeropay.dev/problems/{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    body.update(extra)
    return body


def render_error(error: e.ZeroPayError) -> tuple[int, dict[str, Any]]:
    status = status_of(error)
    detail = error.message if status < 500 else "the request could not be completed"
    extra = {k: v for k, v in error.details.items() if k in PUBLIC_DETAILS and status < 500}
    return status, problem_body(status, error.code, detail, **extra)


def problem(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
