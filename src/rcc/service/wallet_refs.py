"""Wallet references as the credits API names them: `user:<user id>` and
`org:<org id>`. The one place that turns a reference into a wallet id."""

from __future__ import annotations

import uuid

from rcc.domain.errors import Invalid

KINDS = ("user", "org")


def resolve(ref: str) -> str | Invalid:
    """The wallet id a reference names, or why it names none. A user's wallet has the
    user's id (rcc.service.handlers.register_user), an org's the org's
    (rcc.service.org_handlers); whether it exists is for the command to find out under
    the wallet's lock."""
    kind, _, ident = ref.partition(":")
    if kind not in KINDS or not ident:
        return Invalid(detail=f"wallet must look like 'user:<id>' or 'org:<id>', not {ref[:80]!r}")
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        return Invalid(detail=f"{ident[:80]!r} is not a {kind} id")


def kind_of(ref: str) -> str:
    """The owner kind a reference names (`user` or `org`)."""
    return ref.partition(":")[0]


def ref_of(owner_kind: str, wallet_id: str) -> str:
    """The reference of a wallet, as answers show it."""
    return f"{owner_kind or 'user'}:{wallet_id}"
