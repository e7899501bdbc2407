"""Wallet references as the credits API names them: `user:<user id>` (and, later,
`org:<org id>`). The one place that turns a reference into a wallet id."""

from __future__ import annotations

import uuid

from rcc.domain.errors import Invalid

KINDS = ("user",)


def resolve(ref: str) -> str | Invalid:
    """The wallet id a reference names, or why it names none. A user's wallet has the
    user's id (rcc.service.handlers.register_user); whether it exists is for the
    command to find out under the wallet's lock."""
    kind, _, ident = ref.partition(":")
    if kind not in KINDS or not ident:
        return Invalid(detail=f"wallet must look like 'user:<id>', not {ref[:80]!r}")
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        return Invalid(detail=f"{ident[:80]!r} is not a user id")


def ref_of(owner_kind: str, wallet_id: str) -> str:
    """The reference of a wallet, as answers show it."""
    return f"{owner_kind or 'user'}:{wallet_id}"
