"""The `Idempotency-Key` header as the command routes declare it (POST /jobs, cancel,
admin PATCH): optional, bounded, and scoped to the caller by the route itself."""

from __future__ import annotations

from typing import Annotated

from litestar.params import HeaderParameter

MAX_KEY_LENGTH = 200

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", required=False, max_length=MAX_KEY_LENGTH),
]
