"""Auditors without database access: the `auditor` token role, /audit, and offline
verification of an export (`rcc audit verify --export`), which must agree with the
live verification and catch an export with one event removed or edited."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute

from portal.app import create_app
from portal.identity import UNSAFE
from rcc import anchors
from rcc.audit import verify
from rcc.audit_export import AuditEvent, AuditEventPage
from rcc.config import load_settings
from rcc.service.tokens import create_token
from tests.audit_helpers import AUDIT_KEY, anchor, arcc, first_bad, grant, history, keyed
from tests.conftest import portal_client
from tests.serve_helpers import rcc_env, serve

NO_DATABASE = "postgresql://nobody@127.0.0.1:1/none"  # refuses connections: offline proof


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    (tmp_path / "anchors").mkdir()
    return tmp_path / "anchors"


@pytest.fixture
async def app(db_url: str, pool: asyncpg.Pool, tmp_path: Path, audit_dir: Path) -> Any:
    settings = load_settings(
        {
            "DATABASE_URL": db_url,
            "RCC_DATA_DIR": str(tmp_path / "data"),
            "RCC_SESSION_SECRET": "test-session-secret",
            "RCC_AUDIT_KEY": AUDIT_KEY,
            "RCC_AUDIT_ANCHOR_DIR": str(audit_dir),
        }
    )
    return create_app(settings, pool=pool)


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_client(app) as client:
        yield client


async def bearer(pool: asyncpg.Pool, role: str, user_id: str | None = None) -> dict[str, str]:
    async with pool.acquire() as conn:
        _, secret = await create_token(conn, role, user_id)
    return {"Authorization": f"Bearer {secret}"}


async def pages(http: httpx.AsyncClient, auth: dict[str, str], limit: int) -> list[AuditEvent]:
    """Every event through GET /audit/events, page after page."""
    items: list[AuditEvent] = []
    after = "0"
    while True:
        got = await http.get(f"/audit/events?after={after}&limit={limit}", headers=auth)
        assert got.status_code == 200, got.text
        page = msgspec.json.decode(got.content, type=AuditEventPage)
        assert len(page.items) <= limit
        items += page.items
        if page.next_cursor is None:
            return items
        after = page.next_cursor


def write_lines(path: Path, items: list[AuditEvent]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(item) + b"\n" for item in items))
    return path


def summary(out: str) -> list[str]:
    """The lines of `rcc audit verify` that say what was checked and where the chain ends."""
    return [line for line in out.splitlines() if line.startswith(("checked", "log chain"))]


async def served_log(
    http: httpx.AsyncClient, auditor: dict[str, str], everything: list[int]
) -> list[AuditEvent]:
    """GET /audit/events page by page until it serves every position, in that order."""
    async with asyncio.timeout(15):
        while True:
            items = await pages(http, auditor, limit=7)
            if [i.position for i in items] == everything:
                return items
            await asyncio.sleep(0.1)


async def test_an_auditor_reads_the_log_and_verifies_it_offline_as_live(
    pool: asyncpg.Pool,
    owner: asyncpg.Connection,
    http: httpx.AsyncClient,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    await history(pool)
    made = await anchor(cli_env, tmp_path / "a.json")
    users = await history(pool, users=1)
    await grant(pool, users[0], 4)  # newer than the anchor: not chained yet
    auditor = await bearer(pool, "auditor")

    # The log is served in commit-safe order, so a transaction open anywhere on the
    # server (another test's) holds the newest events back for a moment: wait them out.
    everything = [
        r["position"]
        for r in await owner.fetch("SELECT position FROM events ORDER BY tx_id, position")
    ]
    items = await served_log(http, auditor, everything)
    chained = [i for i in items if i.chain is not None]
    assert len(chained) == anchors.read(made).events and items[-1].chain is None
    export = write_lines(tmp_path / "from-api.jsonl", items)

    offline_env = {**keyed(cli_env), "DATABASE_URL": NO_DATABASE}
    offline = await arcc(
        offline_env, "audit", "verify", "--export", str(export), "--anchor", str(made)
    )
    live = await arcc(keyed(cli_env), "audit", "verify", "--anchor", str(made))
    assert offline.returncode == 0 and live.returncode == 0, offline.stdout + live.stdout
    assert summary(offline.stdout) == summary(live.stdout) and len(summary(live.stdout)) == 2
    report = await verify(owner, anchors=[anchors.read(made)])
    assert f"checked {report.events} events" in offline.stdout and report.anchors_held == 1

    # `rcc audit export` writes the same items as the API serves.
    cli_export = tmp_path / "from-cli.jsonl"
    done = await arcc(cli_env, "audit", "export", "--out", str(cli_export))
    assert done.returncode == 0, done.stderr
    decoder = msgspec.json.Decoder(AuditEvent)
    from_cli = [decoder.decode(line) for line in cli_export.read_bytes().splitlines()]
    assert [msgspec.json.encode(i) for i in from_cli] == [msgspec.json.encode(i) for i in items]


async def test_an_export_with_one_event_removed_or_edited_fails_offline(
    pool: asyncpg.Pool, http: httpx.AsyncClient, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await history(pool)
    made = await anchor(cli_env, tmp_path / "a.json")
    items = await pages(http, await bearer(pool, "admin"), limit=200)
    offline_env = {**keyed(cli_env), "DATABASE_URL": NO_DATABASE}

    async def offline(path: Path) -> Any:
        return await arcc(
            offline_env, "audit", "verify", "--export", str(path), "--anchor", str(made)
        )

    assert (await offline(write_lines(tmp_path / "ok.jsonl", items))).returncode == 0

    removed = write_lines(tmp_path / "removed.jsonl", items[:5] + items[6:])
    caught = await offline(removed)
    assert caught.returncode == 1 and first_bad(caught) == items[6].position, caught.stdout

    grant_at = next(i for i, item in enumerate(items) if item.type == "topup_granted")
    raw = bytes(items[grant_at].data)
    edited_data = msgspec.Raw(re.sub(rb'"amount": \d+', b'"amount": 999', raw))
    assert bytes(edited_data) != raw
    edited = list(items)
    edited[grant_at] = msgspec.structs.replace(items[grant_at], data=edited_data)
    caught = await offline(write_lines(tmp_path / "edited.jsonl", edited))
    assert caught.returncode == 1 and first_bad(caught) == items[grant_at].position
    assert "hash mismatch" in caught.stdout


async def test_an_auditor_token_is_refused_every_write(
    app: Any, pool: asyncpg.Pool, http: httpx.AsyncClient, cli_env: dict[str, str]
) -> None:
    made = await arcc(cli_env, "tokens", "create", "--role", "auditor")
    assert made.returncode == 0, made.stderr
    auditor = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    fill = {"uuid": str(uuid.uuid4()), "str": "x", "int": "1", "path": "x"}
    writes = [
        (method, re.sub(r"\{\w+:(\w+)\}", lambda m: fill[m[1]], route.path))
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for method in sorted(route.methods & UNSAFE)
    ]
    assert len(writes) >= 10  # the enumeration found the app's writes
    for method, path in writes:
        answer = await http.request(method, path, headers=auditor, json={})
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["error"] == "read_only_role"
    # and it may read what auditors read
    assert (await http.get("/audit/events", headers=auditor)).status_code == 200
    assert (await http.get("/audit/anchors", headers=auditor)).status_code == 200


async def test_the_audit_routes_are_for_auditors_and_admins_only(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    users = await history(pool, users=1)
    user = await bearer(pool, "user", users[0])
    for path in ("/audit/events", f"/audit/wallets/{users[0]}", "/audit/anchors"):
        assert (await http.get(path, headers=user)).status_code == 403
        assert (await http.get(path)).status_code == 401
    assert (await http.get("/audit/events", headers=await bearer(pool, "admin"))).status_code == 200


async def test_a_wallet_as_of_a_position_or_a_time(
    pool: asyncpg.Pool, owner: asyncpg.Connection, http: httpx.AsyncClient
) -> None:
    users = await history(pool, users=1)
    wallet = users[0]
    auditor = await bearer(pool, "auditor")
    first = await owner.fetchrow(
        """SELECT position, recorded_at FROM events WHERE stream_id = $1
            AND type = 'topup_granted' ORDER BY position LIMIT 1""",
        f"wallet-{wallet}",
    )
    at_grant = (
        await http.get(f"/audit/wallets/{wallet}?as_of={first['position']}", headers=auditor)
    ).json()
    assert at_grant["balance_rcc"] == 20 and at_grant["position"] == first["position"]
    assert [line["reason"] for line in at_grant["ledger"]] == ["TOPUP_GRANT"]

    now = (await http.get(f"/audit/wallets/user:{wallet}", headers=auditor)).json()
    net = await owner.fetchval(
        "SELECT (state->>'balance')::int FROM streams WHERE stream_id = $1", f"wallet-{wallet}"
    )
    assert now["balance_rcc"] == net == 19  # 20 granted, 1 spent, 1 reserved and released
    assert [line["delta"] for line in now["ledger"]] == [1, -1, -1, 20]
    assert now["ledger"][0]["balance_after"] == 19

    before = first["recorded_at"].isoformat().replace("+00:00", "Z")
    just_before = (
        await http.get(f"/audit/wallets/{wallet}", params={"as_of": before}, headers=auditor)
    ).json()
    assert just_before["balance_rcc"] == 20  # at the grant's own instant it counts

    paged = (await http.get(f"/audit/wallets/{wallet}?limit=3", headers=auditor)).json()
    older = (
        await http.get(
            f"/audit/wallets/{wallet}?limit=3&cursor={paged['next_cursor']}", headers=auditor
        )
    ).json()
    assert [x["delta"] for x in paged["ledger"] + older["ledger"]] == [1, -1, -1, 20]
    assert older["next_cursor"] is None

    for bad in ("yesterday", "2026-01-31T12:00:00"):
        answer = await http.get(f"/audit/wallets/{wallet}", params={"as_of": bad}, headers=auditor)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_as_of"
    missing = await http.get(f"/audit/wallets/{uuid.uuid4()}", headers=auditor)
    assert missing.status_code == 404
    unknown = await http.get("/audit/events?after=999999", headers=auditor)
    assert unknown.status_code == 400 and unknown.json()["error"] == "unknown_position"


async def test_the_anchors_in_the_anchor_directory_are_listed(
    pool: asyncpg.Pool, http: httpx.AsyncClient, cli_env: dict[str, str], audit_dir: Path
) -> None:
    await history(pool, users=1)
    await anchor(cli_env, audit_dir / "anchor-000000000000001-first.json")
    await grant(pool, (await history(pool, users=1))[0], 1)
    await anchor(cli_env, audit_dir / "anchor-000000000000002-second.json")
    (audit_dir / "anchor-zzz-not-one.json").write_text("{}")
    got = await http.get("/audit/anchors?limit=1", headers=await bearer(pool, "auditor"))
    first = msgspec.json.decode(got.content)
    assert len(first["items"]) == 1 and first["next_cursor"]
    rest = await http.get(
        f"/audit/anchors?cursor={first['next_cursor']}", headers=await bearer(pool, "auditor")
    )
    listed = [msgspec.convert(a, anchors.Anchor) for a in first["items"] + rest.json()["items"]]
    assert len(listed) == 2 and listed[0].events < listed[1].events
    trusted = anchors.signing_key(AUDIT_KEY).public_key()
    for found in listed:
        anchors.check_signature(found, trusted)


async def test_an_auditor_exports_from_a_running_service_and_verifies_with_no_database(
    db_url: str, pool: asyncpg.Pool, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await history(pool)
    made = await anchor(cli_env, tmp_path / "a.json")
    auditor = (await bearer(pool, "auditor"))["Authorization"].removeprefix("Bearer ")
    service = serve(rcc_env(db_url, tmp_path / "data"), tmp_path)
    try:
        await asyncio.to_thread(service.wait_http)
        offline_env = {**keyed(cli_env), "DATABASE_URL": NO_DATABASE}
        path = tmp_path / "over-http.jsonl"
        no_token = await arcc(
            offline_env, "audit", "export", "--url", service.base, "--out", str(path)
        )
        assert no_token.returncode == 2 and "RCC_AUDIT_TOKEN" in no_token.stderr
        env = {**offline_env, "RCC_AUDIT_TOKEN": auditor}
        done = await arcc(env, "audit", "export", "--url", service.base, "--out", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        assert await asyncio.to_thread(service.stop) == 0, service.tail()
    offline = await arcc(env, "audit", "verify", "--export", str(path), "--anchor", str(made))
    live = await arcc(keyed(cli_env), "audit", "verify", "--anchor", str(made))
    assert offline.returncode == 0 == live.returncode, offline.stdout + live.stdout
    assert summary(offline.stdout) == summary(live.stdout)
