"""One place that turns every failure into `{"error": code, "detail": text, ...}`.

Domain errors map to their status; framework errors keep theirs with our body shape;
anything unexpected is a 500 with a request id and no stack trace in the body."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from rcc.domain import errors as domain
from rcc.queue_limits import RETRY_AFTER_S

log = logging.getLogger("portal.errors")

STATUS_OF: dict[type[domain.DomainError], int] = {
    domain.InsufficientCredits: 402,
    domain.NotFound: 404,
    domain.IllegalTransition: 409,
    domain.Conflict: 409,
    domain.IdempotencyKeyReused: 409,
    domain.Invalid: 422,
    domain.TooManyJobs: 429,
    domain.PayloadTooLarge: 413,
    domain.DailyLimitReached: 429,  # h6
    domain.AccountBlocked: 403,  # h6
    domain.Forbidden: 403,  # organisations (h5)
    domain.BudgetExceeded: 402,  # organisations (h5)
}

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


class ApiError(HTTPException):
    """An HTTP error with our code and any extra fields for the body."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.code = code
        self.fields = extra


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def domain_response(error: domain.DomainError) -> Response[dict[str, Any]]:
    """The HTTP answer for a refused command."""
    body = msgspec.to_builtins(error)
    status = STATUS_OF.get(type(error), 422)
    headers = {"Retry-After": str(body.pop("retry_after_s"))} if "retry_after_s" in body else None
    if isinstance(error, domain.TooManyJobs):  # the queue is full: one job's time, roughly
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return Response(body, status_code=status, headers=headers)


def _validation_fields(exc: ValidationException) -> list[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    return [item for item in extra if isinstance(item, dict)]


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, ApiError):
        body = error_body(exc.code, exc.detail, **exc.fields)
    elif isinstance(exc, ValidationException):
        fields = _validation_fields(exc)
        detail = "; ".join(f"{f.get('key') or 'body'}: {f.get('message')}" for f in fields) or str(
            exc.detail
        )
        body = error_body("invalid_request", detail, fields=fields)
    else:
        body = error_body(_CODES.get(exc.status_code, "error"), str(exc.detail))
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def handle_bad_cursor(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return Response(
        error_body("bad_cursor", "cursor is not one this API handed out"), status_code=400
    )


_BAD_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


def handle_bad_value(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Values the database cannot hold are bad input, not a 500: NUL characters in text or
    JSON (\\u0000), and request values asyncpg cannot encode (a date that leaves the
    calendar once converted to UTC, an integer beyond 64 bits). The transaction was
    rolled back. Any other data error is ours, and stays a logged 500."""
    if isinstance(exc, _BAD_TEXT):
        detail = "text must not contain NUL (\\u0000) characters"
    elif type(exc) is asyncpg.DataError and str(exc).startswith("invalid input for query"):
        detail = "a value is out of the range the service can store"
    else:
        return handle_unexpected(request, exc)
    return Response(error_body("invalid_request", detail), status_code=400)


# Losing the database (stopped, restarting, connections cut) is an outage, not a bug.
DATABASE_GONE = (
    asyncpg.PostgresConnectionError,  # 08xxx: the connection failed or does not exist
    asyncpg.OperatorInterventionError,  # 57P0x: shutting down, starting up, crashed
    asyncpg.InterfaceError,  # the connection was closed under the query
    asyncpg.InternalClientError,  # a pooled connection the outage left mid-operation
    OSError,  # the socket: refused, reset, or gone (a file name means a real file error)
)


def handle_database_gone(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    """503 with Retry-After while PostgreSQL is away; the pool reconnects by itself.

    A command whose COMMIT reply was lost does not get here: whether it committed is
    checked first (OutcomeUnknown below when that cannot be told). So POST /jobs, which
    answers from its command alone, answers this only when nothing committed. A route
    that reads after its command (a cancel, an admin PATCH) can meet the outage on that
    read after committing: hence "retry", never "nothing happened" — with the same
    Idempotency-Key a retry is safe either way."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return handle_unexpected(request, exc)
    log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    body = error_body(
        "database_unavailable",
        "the database is not reachable; retry shortly with the same Idempotency-Key",
    )
    return Response(body, status_code=503, headers={"Retry-After": "1"})


def handle_outcome_unknown(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    """503 outcome_unknown: COMMIT was sent, its reply was lost, and the database could not
    be asked in time whether it took effect. Only the same Idempotency-Key makes a retry
    safe: it replays the first answer if the command did commit."""
    log.warning("command outcome unknown: %s", exc)
    detail = (
        "the database connection was lost while the command was committing, so it may or "
        "may not have taken effect; retry with the same Idempotency-Key"
    )
    body = error_body("outcome_unknown", detail)
    return Response(body, status_code=503, headers={"Retry-After": "1"})


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    request_id = request.scope.get("state", {}).get("request_id", "")
    log.exception("unhandled error", extra={"request_id": request_id, "path": request.url.path})
    body = error_body("internal_error", "something went wrong on our side", request_id=request_id)
    return Response(body, status_code=HTTP_500_INTERNAL_SERVER_ERROR)
