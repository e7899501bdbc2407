"""Workflows are bounded and stored once by digest; old events that embed them still run."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from msgspec.structs import replace

from comfy_adapter.run import prompt_id_for
from rcc.domain.events import CreditsReserved, JobCreated, encode_data, job_stream, wallet_stream
from rcc.domain.job import JobState
from rcc.domain.job import evolve as evolve_job
from rcc.domain.wallet import WalletState, fold
from rcc.domain.wallet import reserve as reserve_credits
from rcc.domain.workflow import DEFAULT_MAX_WORKFLOW_BYTES
from rcc.outputs import with_attempt_prefix
from rcc.store.heads import read_head
from rcc.store.wallet_lots import LotChanges, lot_rows, write_lots
from tests.adapter_helpers import (
    SUCCESS,
    assert_ledger,
    create_job,
    running,
    settings_for,
    wait_status,
)
from tests.comfy_server import ComfyServer
from tests.helpers import funded_user, snapshot
from tests.portal_helpers import bearer, grant, sign_up


def workflow_of_size(size: int) -> dict[str, Any]:
    """A valid one-node prompt whose canonical JSON is exactly `size` bytes."""
    shell = {"1": {"class_type": "EmptyImage", "inputs": {"text": ""}}}
    pad = size - len(msgspec.json.encode(shell, order="sorted"))
    return {"1": {"class_type": "EmptyImage", "inputs": {"text": "x" * pad}}}


async def _created(owner: asyncpg.Connection, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = await owner.fetchval(
        "SELECT data FROM events WHERE stream_id = $1 AND version = 1", job_stream(job_id)
    )
    return data


async def test_identical_workflows_are_stored_once_and_named_by_digest(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 10)
    # The same prompt with its keys in another order is the same workflow.
    reordered = {k: SUCCESS[k] for k in reversed(list(SUCCESS))}
    first = await create_job(pool, user, SUCCESS)
    second = await create_job(pool, user, reordered)
    blobs = await owner.fetch("SELECT digest, body, bytes FROM workflow_blobs")
    assert len(blobs) == 1
    canonical = msgspec.json.encode(SUCCESS, order="sorted")
    assert bytes(blobs[0]["digest"]) == hashlib.sha256(canonical).digest()
    assert blobs[0]["bytes"] == len(canonical)
    assert bytes(blobs[0]["body"]) == canonical
    for job in (first, second):
        data = await _created(owner, job)
        assert data["workflow"] == {} and data["workflow_digest"] == bytes(blobs[0]["digest"]).hex()
    other = await create_job(pool, user, {"1": {"class_type": "EmptyImage", "inputs": {}}})
    assert (await _created(owner, other))["workflow_digest"] != (await _created(owner, first))[
        "workflow_digest"
    ]
    assert await owner.fetchval("SELECT count(*) FROM workflow_blobs") == 2


async def test_a_workflow_over_the_limit_is_413_and_writes_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 10)
    limit = DEFAULT_MAX_WORKFLOW_BYTES
    before = await snapshot(owner)
    over = {"type": "IMAGE_TASK", "workflow": workflow_of_size(limit + 1)}
    answer = await client.post("/jobs", json=over, headers=member.headers)
    assert answer.status_code == 413, answer.text
    body = answer.json()
    assert body["error"] == "payload_too_large"
    assert body["limit_bytes"] == limit and body["size_bytes"] == limit + 1
    assert str(limit) in body["detail"]
    assert await snapshot(owner) == before
    assert await owner.fetchval("SELECT count(*) FROM workflow_blobs") == 0
    at_limit = {"type": "IMAGE_TASK", "workflow": workflow_of_size(limit)}
    accepted = await client.post("/jobs", json=at_limit, headers=member.headers)
    assert accepted.status_code == 201, accepted.text
    assert await owner.fetchval("SELECT bytes FROM workflow_blobs") == limit


async def test_an_overlong_adjustment_reason_is_413(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    body = {"rcc_delta": 1, "reason": "é" * 1001}
    answer = await client.patch(f"/admin/users/{member.user_id}", json=body, headers=admin)
    assert answer.status_code == 413 and answer.json()["limit_bytes"] == 2000


async def test_blobs_are_add_only(pool: asyncpg.Pool, owner: asyncpg.Connection) -> None:
    user = await funded_user(pool, 10)
    await create_job(pool, user, SUCCESS)
    async with pool.acquire() as conn:  # the service role
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE workflow_blobs SET body = '\\x7b7d'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM workflow_blobs")
    # Not even a superuser: the trigger refuses (SQLSTATE RC003).
    for change in ("UPDATE workflow_blobs SET body = '\\x7b7d'", "DELETE FROM workflow_blobs"):
        with pytest.raises(asyncpg.PostgresError, match="immutable") as refused:
            await owner.execute(change)
        assert refused.value.sqlstate == "RC003"
    # A body is stored only under its own digest: a forged pair is refused.
    with pytest.raises(asyncpg.CheckViolationError):
        await owner.execute(
            "INSERT INTO workflow_blobs (digest, body) VALUES (sha256('\\x7b7d'), '\\x5b5d')"
        )


async def _old_shape_job(pool: asyncpg.Pool, user_id: str, workflow: dict[str, Any]) -> str:
    """A job written the way it was before workflows were stored by digest: the
    job_created data embeds the workflow and has no workflow_digest field at all."""
    job_id = "01d54a9e-0000-4000-8000-000000000001"
    async with pool.acquire() as conn:
        head = await read_head(conn, wallet_stream(user_id))
        version, wallet = head.version, head.as_state(WalletState)
        # The reserve as the wallet decides it today (drawn from its lot): only the job's
        # event is in the old shape here.
        [reserve] = reserve_credits(wallet, job_id, 1, datetime.now(UTC))
        assert isinstance(reserve, CreditsReserved)
        created = JobCreated(
            job_id=job_id,
            user_id=user_id,
            wallet_id=wallet.wallet_id,
            job_type="IMAGE_TASK",
            cost_rcc=1,
            workflow=workflow,
            draws=reserve.draws,
        )
        old_data = msgspec.to_builtins(created)
        del old_data["type"], old_data["workflow_digest"]
        after = fold([reserve], wallet)
        drawn = LotChanges()  # the lots' rows move with the head, as the unit of work does
        drawn.add(wallet_stream(user_id), lot_rows(wallet), after)
        await write_lots(conn, drawn)
        states = [replace(after, lots=()), evolve_job(JobState(), created)]
        await conn.fetch(
            "SELECT * FROM rcc_append_v1($1, $2, $3, $4, $5, $6, $7)",
            [wallet_stream(user_id), job_stream(job_id)],
            [version, 0],
            [msgspec.json.encode(s).decode() for s in states],
            [1, 2],
            [encode_data(reserve)[0], "job_created"],
            [encode_data(reserve)[1].decode(), msgspec.json.encode(old_data).decode()],
            '{"actor": "old writer"}',
        )
    return job_id


async def test_an_old_event_that_embeds_its_workflow_still_runs(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    old = await _old_shape_job(pool, user, SUCCESS)
    data = await _created(owner, old)
    assert data["workflow"] == SUCCESS and "workflow_digest" not in data
    async with ComfyServer() as comfy, running(pool, settings_for(tmp_path, [comfy.url])):
        new = await create_job(pool, user, SUCCESS)
        assert await wait_status(pool, old, "succeeded", "failed") == "succeeded"
        assert await wait_status(pool, new, "succeeded", "failed") == "succeeded"
    # Both ran the same prompt: the embedded one and the one stored by digest (its output
    # names prefixed per attempt, docs/GPU_POOL.md).
    for job in (old, new):
        sent = comfy.history[prompt_id_for(job)]["prompt"][2]
        assert sent == with_attempt_prefix(SUCCESS, job, 1)
    await assert_ledger(pool, owner, user, 8)
