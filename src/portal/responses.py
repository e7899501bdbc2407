"""The error answers a route can give, for the OpenAPI document (`responses=errors(...)`).

Every error body has one shape (`portal.errors`): `{"error": code, "detail": text, ...}`.
Litestar documents its own 400 shape by default; these entries replace it with ours, so
the schema says what the service does (schemathesis checks it: tests/test_schemathesis.py).
"""

from __future__ import annotations

import msgspec
from litestar.openapi.datastructures import ResponseSpec

from portal.schemas import Problem


class InsufficientCreditsProblem(msgspec.Struct, frozen=True, kw_only=True):
    """402: the balance is short; nothing was written."""

    error: str
    detail: str
    balance_rcc: int
    cost_rcc: int


_WHY = {
    400: "Bad input: malformed JSON, an unknown field, a wrong type (`fields` names them)",
    401: "No credentials, or an unknown or revoked token",
    402: "Insufficient credits",
    403: "Not allowed: wrong role, or a cookie session without its CSRF header",
    404: "Not found (someone else's is not found either)",
    409: "Conflict with the current state (illegal transition, reused Idempotency-Key)",
    413: "Request body too large, or a stored payload (a workflow) over its limit",
    415: "A JSON body sent without Content-Type: application/json",
    422: "A rule is broken (the code says which)",
    429: "Rate limited, or too many unfinished jobs",
    502: "An upstream service answered badly",
    503: (
        "A dependency is not configured or not reachable; for a command, `outcome_unknown`"
        " when its commit could not be confirmed (retry with the same Idempotency-Key)"
    ),
}

SIGNED_IN = (401, 403)  # the guards' answers
BODY = (400, 413, 415)  # a JSON body that does not decode, is too large, or is not JSON


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """The documented error responses for these status codes, in our body shape."""
    return {
        code: ResponseSpec(
            data_container=InsufficientCreditsProblem if code == 402 else Problem,
            description=_WHY[code],
            generate_examples=False,
        )
        for code in sorted(set(codes))
    }


def no_content(description: str) -> dict[int, ResponseSpec]:
    """A 204 documented as what it is, no body at all (Litestar would document the
    `Response[None]` a handler returns as a JSON `null`)."""
    return {204: ResponseSpec(data_container=None, description=description)}
