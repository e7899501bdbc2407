"""The auto top-up tables (schema/0019): settings and saved cards, charges per crossing."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

MAX_IN_A_ROW = 3  # declines in a row that turn auto top-up off


class Setting(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str  # the wallet's owner: a user's id, or an org's (owner_kind says which)
    enabled: bool
    threshold_rcc: int
    pack: str
    customer_id: str | None = None
    payment_method: str | None = None
    owner_kind: str = "user"
    buyer_id: str | None = None  # an org's: the owner or admin who turned it on


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    crossing: str
    user_id: str  # the wallet's owner, as in Setting
    pack: str
    customer_id: str | None
    payment_method: str | None
    owner_kind: str = "user"
    buyer_id: str | None = None


_COLUMNS = (
    "user_id, enabled, threshold_rcc, pack, customer_id, payment_method, owner_kind, buyer_id"
)


async def setting(conn: asyncpg.Connection, user_id: str) -> Setting | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM auto_topups WHERE user_id = $1",
        user_id,
    )
    return None if row is None else msgspec.convert(dict(row), Setting)


async def enabled_for(conn: asyncpg.Connection, user_ids: Sequence[str]) -> dict[str, Setting]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM auto_topups WHERE enabled AND user_id = ANY($1::text[])",
        list(user_ids),
    )
    return {r["user_id"]: msgspec.convert(dict(r), Setting) for r in rows}


async def configure(
    conn: asyncpg.Connection,
    user_id: str,
    enabled: bool,
    threshold_rcc: int,
    pack: str,
    owner_kind: str = "user",
    buyer_id: str | None = None,
) -> None:
    """The owner's choice (`user_id` is an org's id when `owner_kind` is "org")."""
    await conn.execute(
        """INSERT INTO auto_topups (user_id, enabled, threshold_rcc, pack, owner_kind, buyer_id)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (user_id) DO UPDATE SET enabled = $2, threshold_rcc = $3, pack = $4,
                                               owner_kind = $5, buyer_id = $6,
                                               updated_at = now()""",
        user_id,
        enabled,
        threshold_rcc,
        pack,
        owner_kind,
        buyer_id,
    )


async def save_card(
    conn: asyncpg.Connection, user_id: str, customer_id: str, payment_method: str
) -> None:
    await conn.execute(
        """INSERT INTO auto_topups (user_id, customer_id, payment_method) VALUES ($1, $2, $3)
           ON CONFLICT (user_id) DO UPDATE SET customer_id = $2, payment_method = $3,
                                               updated_at = now()""",
        user_id,
        customer_id,
        payment_method,
    )


async def add_charge(conn: asyncpg.Connection, crossing: str, user_id: str, pack: str) -> bool:
    """A charge for this crossing; False if it exists already."""
    done = await conn.execute(
        """INSERT INTO auto_topup_charges (crossing, user_id, pack) VALUES ($1, $2, $3)
           ON CONFLICT (crossing) DO NOTHING""",
        crossing,
        user_id,
        pack,
    )
    return bool(done.endswith(" 1"))


async def claim_due(conn: asyncpg.Connection, limit: int, lease_s: float) -> list[Charge]:
    """Charges to send: due ones, and any whose sender died mid-way (its lease is over;
    the Stripe idempotency key of the crossing makes sending it again harmless)."""
    rows = await conn.fetch(
        """WITH due AS (
               SELECT crossing FROM auto_topup_charges
                WHERE status = 'due' OR (status = 'sending'
                      AND claimed_at < now() - make_interval(secs => $2))
                ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE auto_topup_charges c SET status = 'sending', claimed_at = now()
             FROM due WHERE c.crossing = due.crossing
        RETURNING c.crossing, c.user_id, c.pack,
                  (SELECT customer_id FROM auto_topups a WHERE a.user_id = c.user_id),
                  (SELECT payment_method FROM auto_topups a WHERE a.user_id = c.user_id),
                  (SELECT owner_kind FROM auto_topups a WHERE a.user_id = c.user_id),
                  (SELECT buyer_id FROM auto_topups a WHERE a.user_id = c.user_id)""",
        limit,
        lease_s,
    )
    return [msgspec.convert(dict(r), Charge) for r in rows]


async def charge_sent(conn: asyncpg.Connection, crossing: str, payment_intent: str | None) -> bool:
    """The charger's PaymentIntent went through; False if a decline was recorded first."""
    done = await conn.execute(
        """UPDATE auto_topup_charges SET status = 'sent', payment_intent = $2, error = NULL
            WHERE crossing = $1 AND status IN ('due', 'sending')""",
        crossing,
        payment_intent,
    )
    return bool(done.endswith(" 1"))


async def charge_declined(
    conn: asyncpg.Connection, crossing: str, payment_intent: str | None, reason: str
) -> bool:
    """Mark the crossing's charge declined; False when it was already (or is unknown), so
    each PaymentIntent's decline is counted once."""
    done = await conn.execute(
        """UPDATE auto_topup_charges
              SET status = 'declined', payment_intent = coalesce($2, payment_intent), error = $3
            WHERE crossing = $1 AND status <> 'declined'""",
        crossing,
        payment_intent,
        reason,
    )
    return bool(done.endswith(" 1"))


async def declines_in_a_row(conn: asyncpg.Connection, user_id: str) -> int:
    """Declined charges since the last one that went through (the newest first)."""
    rows = await conn.fetch(
        """SELECT status FROM auto_topup_charges
            WHERE user_id = $1 AND status IN ('sent', 'declined')
            ORDER BY created_at DESC LIMIT $2""",
        user_id,
        MAX_IN_A_ROW,
    )
    count = 0
    for row in rows:
        if row["status"] != "declined":
            break
        count += 1
    return count


async def disable(conn: asyncpg.Connection, user_id: str) -> None:
    await conn.execute(
        "UPDATE auto_topups SET enabled = false, updated_at = now() WHERE user_id = $1", user_id
    )
