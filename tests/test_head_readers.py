"""A wallet's lots are rows of `wallet_lots`, not part of its cached head (issue 12, h17).
Every read of a head outside a unit of work's lock goes through rcc.store.heads, which
puts the lots back in: the first attempt let readers select `streams.state` themselves,
and the org pages, the workspace switcher, GET /me and the credits.expiring notice saw
wallets without lots. This file fails when a module reads a whole head another way,
and shows the readers that go through the accessor seeing the lots."""

from __future__ import annotations

import ast
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from rcc.domain import wallet as wallets
from rcc.service import commands as c
from rcc.service import org_commands as oc
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.org_reads import org_now
from rcc.store.heads import read_heads
from rcc.store.time_travel import wallet_as_of
from rcc.store.unit_of_work import UnitOfWork
from rcc.webhooks.store import expiring_lots
from tests.portal_helpers import grant, sign_up

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (ROOT / "src", ROOT / "projections")
# Where a whole head may be selected: the accessor; the unit of work and the group
# commit, which lock heads and then load the lots under the lock; the audit, which
# checks version, hash and balance only.
WHOLE_HEAD_READERS = {
    "rcc/store/heads.py",
    "rcc/store/unit_of_work.py",
    "rcc/service/coalesce.py",
    "rcc/audit.py",
}
# Where the lot rows may be named in SQL: their own module and the accessor.
LOT_ROW_READERS = {"rcc/store/wallet_lots.py", "rcc/store/heads.py"}

_STREAMS = re.compile(r"\b(?:FROM|JOIN)\s+streams\b", re.IGNORECASE)
# `state` or `x.state` as a whole column: not one field of it (->, ->>, ?, #>).
_WHOLE_STATE = re.compile(r"(?<![\w'\"])(?:\w+\.)?state\b(?!\s*(?:->|\?|#>))")
_LOTS_FIELD = re.compile(r"->>?\s*'lots'")
_LOT_ROWS = re.compile(r"\bwallet_lots\b")


def sql_strings(path: Path) -> list[str]:
    """The string literals of a module that read like SQL (f-strings with their holes)."""
    found: list[str] = []
    nodes = list(ast.walk(ast.parse(path.read_text(), filename=str(path))))
    parts_of_fstrings = {id(v) for n in nodes if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in nodes:
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            found.append("".join(str(p) for p in parts))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in parts_of_fstrings
        ):
            found.append(node.value)
    return [s for s in found if re.search(r"\b(SELECT|FROM|JOIN)\b", s)]


def head_offences(path: Path, name: str) -> list[str]:
    """What this module does to heads that only the accessor may do."""
    found: list[str] = []
    for sql in sql_strings(path):
        if _STREAMS.search(sql) and _WHOLE_STATE.search(sql) and name not in WHOLE_HEAD_READERS:
            found.append(f"{name} selects a whole head: {' '.join(sql.split())[:90]}")
        if _STREAMS.search(sql) and _LOTS_FIELD.search(sql):
            found.append(f"{name} reads lots from a head (they are rows): {sql.strip()[:60]}")
        if _LOT_ROWS.search(sql) and name not in LOT_ROW_READERS:
            found.append(f"{name} reads wallet_lots itself: {' '.join(sql.split())[:90]}")
    return found


def test_only_the_accessor_reads_whole_heads() -> None:
    offences = [
        offence
        for source in SOURCES
        for path in sorted(source.rglob("*.py"))
        for offence in head_offences(path, str(path.relative_to(source)))
    ]
    assert offences == []


def test_the_rule_sees_raw_head_readers(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "A = 'SELECT state FROM streams WHERE stream_id = $1'\n"
        'B = f"SELECT s.stream_id, s.state FROM streams s WHERE s.version > {1}"\n'
        "C = \"SELECT state->'lots' FROM streams\"\n"
        "D = 'SELECT remaining FROM wallet_lots'\n"
        "E = \"SELECT state->>'email' FROM streams WHERE stream_id = $1\"\n"  # one field
    )
    assert [o.split(":")[0] for o in head_offences(module, "m.py")] == [
        "m.py selects a whole head",
        "m.py selects a whole head",
        "m.py reads lots from a head (they are rows)",
        "m.py reads wallet_lots itself",
    ]


async def test_every_reader_sees_a_wallets_lots(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 7)  # a dated top-up lot
    org_id = str(uuid.uuid4())
    soon = datetime.now(UTC) + timedelta(days=2)
    for cmd in (
        oc.CreateOrg(user_id=member.user_id, name="Lab", org_id=org_id),
        oc.AdjustOrgCredits(org_id=org_id, actor="t", amount=30, note="seed", expires_at=soon),
        c.CreateJob(user_id=member.user_id, job_type="VIDEO_TASK", org_id=org_id),
    ):
        assert isinstance(await execute(pool, cmd), Done)
    mine, theirs = await wallet_as_of(owner, member.user_id), await wallet_as_of(owner, org_id)
    assert mine.lots and theirs.lots  # what a reader must see
    # The accessor and a unit of work's peek: each wallet as folded from its events.
    heads = await read_heads(owner, [f"wallet-{member.user_id}", f"wallet-{org_id}"])
    assert heads[f"wallet-{member.user_id}"].as_state(wallets.WalletState) == mine
    assert heads[f"wallet-{org_id}"].as_state(wallets.WalletState) == theirs
    async with UnitOfWork(pool) as uow:
        peeked = await uow.peek(f"wallet-{org_id}")
    assert peeked.as_state(wallets.WalletState) == theirs
    # The org pages and the workspace switcher (org_now), GET /me, the service API and
    # the credits.expiring notice: each sees the lots' credits and expiries.
    async with pool.acquire() as conn:
        _, org_wallet = await org_now(conn, org_id)
        expiring = await expiring_lots(conn, datetime.now(UTC), 100)
    assert wallets.spendable(org_wallet, datetime.now(UTC)) == 25
    assert (org_id, "L1", 25) in [(w, lot, left) for w, lot, _, left in expiring]
    me = (await client.get("/me")).json()
    assert me["balance_rcc"] == wallets.spendable(mine, datetime.now(UTC)) > 0
    assert me["next_expiry"] is not None
    page = await client.get(f"/app/orgs/{org_id}")
    assert page.status_code == 200 and "25" in page.text
