"""The ComfyUI adapter against the recorded-protocol test server, on real PostgreSQL.

Each scenario ends with the job's state, the wallet balance summed from the events
alone, and `rcc audit verify` (every chain, every balance, one release per job).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import asyncpg

from comfy_adapter.run import prompt_id_for
from projections.job_waiting import waiting_reason
from rcc.domain.events import (
    JobExecutionLogged,
    JobFailed,
    JobPromptSubmitted,
    JobSucceeded,
)
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.adapter_helpers import (
    RUNTIME_ERROR,
    SLOW,
    SUCCESS,
    assert_ledger,
    create_job,
    invalid_prompt,
    job_events,
    posts_for,
    running,
    settings_for,
    status_of,
    wait_status,
    wait_until,
)
from tests.comfy_server import ComfyServer
from tests.helpers import funded_user


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_kinds(events: list[object]) -> list[str]:
    return [line.kind for e in events if isinstance(e, JobExecutionLogged) for line in e.lines]


def failure(events: list[object]) -> str:
    return next(e.error for e in events if isinstance(e, JobFailed))


async def cancel(pool: asyncpg.Pool, job_id: str) -> None:
    """What POST /jobs/{id}/cancel does."""
    done = await execute(pool, c.MarkJob(job_id=job_id, status="cancelled", actor="owner"))
    assert isinstance(done, Done), done


async def test_success_downloads_outputs_and_settles(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    async with ComfyServer() as comfy, running(pool, settings_for(tmp_path, [comfy.url])):
        job = await create_job(pool, user, SUCCESS)
        assert await wait_status(pool, job, "succeeded", "failed") == "succeeded"
    events = await job_events(pool, job)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:4] == ["JobCreated", "JobQueued", "JobPromptSubmitted", "JobStarted"]
    done = next(e for e in events if isinstance(e, JobSucceeded))
    assert done.output_uris == [f"/outputs/{job}/protocol_capture_00001_.png"]
    assert done.duration_ms is not None and done.duration_ms >= 0
    stored = tmp_path / "data" / "outputs" / job / "protocol_capture_00001_.png"
    assert (
        stored.read_bytes() == comfy.files[("output", "", f"{job}-a1_protocol_capture_00001_.png")]
    )
    submitted = next(e for e in events if isinstance(e, JobPromptSubmitted))
    assert submitted.prompt_id == prompt_id_for(job) and submitted.backend == comfy.url
    assert {"execution_start", "executing", "executed", "execution_success"} <= set(
        log_kinds(events)
    )
    assert posts_for(comfy, job) == 1
    await assert_ledger(pool, owner, user, 9)


async def test_validation_refusal_fails_with_comfyuis_message_and_releases(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    async with ComfyServer() as comfy, running(pool, settings_for(tmp_path, [comfy.url])):
        below_min = await create_job(pool, user, invalid_prompt("value_below_min"))
        unknown = await create_job(pool, user, invalid_prompt("unknown_node_class"))
        assert await wait_status(pool, below_min, "failed", "succeeded") == "failed"
        assert await wait_status(pool, unknown, "failed", "succeeded") == "failed"
    error = failure(await job_events(pool, below_min))
    assert error.startswith("ComfyUI refused the prompt: Prompt outputs failed validation")
    assert "node 1 (EmptyImage): Value 0 smaller than min of 1: width" in error
    assert "NoSuchNodeXYZ does not exist" in failure(await job_events(pool, unknown))
    assert comfy.executed == [], "nothing was queued"
    await assert_ledger(pool, owner, user, 10)


async def test_runtime_error_fails_with_the_exception_and_releases(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    async with ComfyServer() as comfy, running(pool, settings_for(tmp_path, [comfy.url])):
        job = await create_job(pool, user, RUNTIME_ERROR)
        assert await wait_status(pool, job, "failed", "succeeded") == "failed"
    events = await job_events(pool, job)
    assert failure(events) == (
        "ComfyUI failed at node 2 (ImageToMask): "
        "IndexError: index 3 is out of bounds for dimension 3 with size 3"
    )
    assert {"execution_error", "traceback"} <= set(log_kinds(events))
    await assert_ledger(pool, owner, user, 10)


async def test_socket_dropped_mid_run_is_recovered_through_history(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    # The socket drops when ImageInvert starts and cannot reconnect for 0.3 s: the run
    # ends meanwhile, so its end is only known from /history after the reconnect.
    comfy = ComfyServer(drop_sockets_at="ImageInvert", hold_sockets_s=0.3)
    async with comfy, running(pool, settings_for(tmp_path, [comfy.url])) as worker:
        job = await create_job(pool, user, SUCCESS)
        assert await wait_status(pool, job, "succeeded", "failed") == "succeeded"
    assert comfy.ws_connects[worker.client_id] >= 2
    assert comfy.history_gets[prompt_id_for(job)] >= 1
    assert "reconnected" in log_kinds(await job_events(pool, job))
    assert posts_for(comfy, job) == 1
    await assert_ledger(pool, owner, user, 9)


async def test_slow_run_past_its_timeout_is_interrupted_failed_and_released(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    settings = settings_for(tmp_path, [], timeouts_s={"IMAGE_TASK": 0.4, "VIDEO_TASK": 60})
    async with ComfyServer(node_seconds={"ImageBlur": 30}) as comfy:
        settings = settings_for(tmp_path, [comfy.url], timeouts_s=settings.timeouts_s)
        async with running(pool, settings):
            job = await create_job(pool, user, SLOW)
            assert await wait_status(pool, job, "failed", "succeeded") == "failed"
            pid = prompt_id_for(job)
            await wait_until(lambda: pid in comfy.history, what="the interrupted run to end")
    assert failure(await job_events(pool, job)).startswith("timed out after 0.4 s (IMAGE_TASK)")
    assert pid in comfy.interrupts
    assert comfy.history[pid]["status"]["messages"][-1][0] == "execution_interrupted"
    await assert_ledger(pool, owner, user, 10)


async def test_backend_down_then_up_jobs_wait_then_run(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    comfy = ComfyServer(port=free_port())
    async with running(pool, settings_for(tmp_path, [comfy.url])):
        job = await create_job(pool, user, SUCCESS)
        assert await wait_status(pool, job, "queued") == "queued"
        async with pool.acquire() as conn:
            await wait_until_reason(conn, "no ComfyUI backend is reachable")
        await asyncio.sleep(0.3)
        assert await status_of(pool, job) == "queued", "a dead backend gets no job"
        async with comfy:
            assert await wait_status(pool, job, "succeeded", "failed") == "succeeded"
    assert posts_for(comfy, job) == 1
    await assert_ledger(pool, owner, user, 9)


async def wait_until_reason(conn: asyncpg.Connection, start: str) -> str:
    for _ in range(500):
        reason = await waiting_reason(conn)
        if reason.startswith(start):
            return reason
        await asyncio.sleep(0.02)
    raise AssertionError(f"waiting reason stayed {reason!r}")


async def test_backend_gone_mid_run_fails_after_bounded_retries(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    comfy = ComfyServer(node_seconds={"ImageBlur": 30})
    await comfy.start()
    async with running(pool, settings_for(tmp_path, [comfy.url], poll_s=0.2)):
        job = await create_job(pool, user, SLOW)
        await wait_until(lambda: prompt_id_for(job) in comfy.executed, what="the run to start")
        await comfy.stop()  # and it never comes back
        assert await wait_status(pool, job, "failed", "succeeded") == "failed"
    error = failure(await job_events(pool, job))
    assert error.startswith(f"ComfyUI backend {comfy.url} did not answer after 3 attempts")
    await assert_ledger(pool, owner, user, 10)


async def test_no_backend_configured_jobs_wait_queued_and_say_why(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    async with pool.acquire() as conn:
        assert (await waiting_reason(conn)).startswith("the ComfyUI adapter is not running")
    async with running(pool, settings_for(tmp_path, [])):
        job = await create_job(pool, user, SUCCESS)
        assert await wait_status(pool, job, "queued") == "queued"
        async with pool.acquire() as conn:
            reason = await wait_until_reason(conn, "no ComfyUI backend is configured")
        assert "COMFYUI_URLS is empty" in reason
    await assert_ledger(pool, owner, user, 9)


async def test_worker_cancelled_mid_run_then_restarted_submits_once(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    """The adapter dies while ComfyUI runs the job; ComfyUI finishes it meanwhile.
    A new adapter finds the recorded prompt in /history: no second POST."""
    user = await funded_user(pool, 10)
    async with ComfyServer(node_seconds={"ImageBlur": 0.5}) as comfy:
        settings = settings_for(tmp_path, [comfy.url])
        from comfy_adapter.worker import AdapterWorker

        first = AdapterWorker(pool, settings, feed_poll_s=0.2)
        task = asyncio.create_task(first.run())
        job = await create_job(pool, user, SLOW)
        pid = prompt_id_for(job)
        await wait_until(lambda: pid in comfy.executed, what="the run to start")
        task.cancel()  # killed mid-wait, not stopped
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Killed after POST /prompt: marked running, or not yet (the crash window).
        assert await status_of(pool, job) in ("queued", "running")
        await wait_until(lambda: pid in comfy.history, what="ComfyUI to finish alone")
        async with running(pool, settings):
            assert await wait_status(pool, job, "succeeded", "failed") == "succeeded"
    assert comfy.posts[pid] == 1
    assert "reconcile" in log_kinds(await job_events(pool, job))
    await assert_ledger(pool, owner, user, 9)


async def test_prompt_recorded_but_never_posted_is_submitted_once_on_start(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    """The crash window between recording the prompt id and POST /prompt: the backend
    has never seen the prompt, so the next adapter submits it, exactly once (as the
    next attempt: a prompt unknown to the backend is never followed again)."""
    user = await funded_user(pool, 10)
    async with ComfyServer() as comfy:
        job = await create_job(pool, user, SUCCESS)
        await execute(pool, c.MarkJob(job_id=job, status="queued"))
        recorded = await execute(
            pool,
            c.RecordPrompt(
                job_id=job, backend=comfy.url, prompt_id=prompt_id_for(job), client_id="x"
            ),
        )
        assert isinstance(recorded, Done)
        async with running(pool, settings_for(tmp_path, [comfy.url])):
            assert await wait_status(pool, job, "succeeded", "failed") == "succeeded"
    assert posts_for(comfy, job) == 0 and comfy.posts[prompt_id_for(job, 2)] == 1
    await assert_ledger(pool, owner, user, 9)


async def test_cancel_while_queued_is_never_submitted(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    comfy = ComfyServer(node_seconds={"ImageBlur": 1.0})
    async with comfy, running(pool, settings_for(tmp_path, [comfy.url], slots=1)):
        busy = await create_job(pool, user, SLOW)
        await wait_status(pool, busy, "running")  # the only slot is taken
        waiting = await create_job(pool, user, SUCCESS)
        assert await wait_status(pool, waiting, "queued") == "queued"
        await asyncio.sleep(0.1)
        assert await status_of(pool, waiting) == "queued"
        await cancel(pool, waiting)
        assert await wait_status(pool, busy, "succeeded", "failed") == "succeeded"
        await asyncio.sleep(0.2)
    assert posts_for(comfy, waiting) == 0
    assert not any(isinstance(e, JobPromptSubmitted) for e in await job_events(pool, waiting))
    await assert_ledger(pool, owner, user, 9)


async def test_cancel_while_pending_on_comfyui_deletes_it_from_the_queue(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    comfy = ComfyServer(node_seconds={"ImageBlur": 1.0})
    async with comfy, running(pool, settings_for(tmp_path, [comfy.url], slots=2)):
        busy = await create_job(pool, user, SLOW)
        await wait_until(lambda: prompt_id_for(busy) in comfy.executed, what="busy to start")
        pending = await create_job(pool, user, SUCCESS)
        pid = prompt_id_for(pending)
        await wait_until(
            lambda: any(item.prompt_id == pid for item in comfy.pending),
            what="the second prompt to wait in ComfyUI's queue",
        )
        await cancel(pool, pending)
        await wait_until(lambda: pid in comfy.deletes, what="POST /queue delete")
        assert await wait_status(pool, busy, "succeeded", "failed") == "succeeded"
    assert pid not in comfy.executed and pid not in comfy.history
    assert await status_of(pool, pending) == "cancelled"
    await assert_ledger(pool, owner, user, 9)


async def test_cancel_while_running_interrupts_it(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    comfy = ComfyServer(node_seconds={"ImageBlur": 30})
    async with comfy, running(pool, settings_for(tmp_path, [comfy.url])):
        job = await create_job(pool, user, SLOW)
        pid = prompt_id_for(job)
        await wait_until(lambda: pid in comfy.executed, what="the run to start")
        await wait_status(pool, job, "running")
        await cancel(pool, job)
        await wait_until(lambda: pid in comfy.history, what="the interrupted run to end")
    assert pid in comfy.interrupts
    assert comfy.history[pid]["status"]["messages"][-1][0] == "execution_interrupted"
    events = await job_events(pool, job)
    assert type(events[-1]).__name__ in ("JobCancelled", "JobExecutionLogged")
    assert await status_of(pool, job) == "cancelled"
    await assert_ledger(pool, owner, user, 10)


async def test_partially_invalid_prompt_runs_its_valid_outputs(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    """ComfyUI answers 200 with node_errors and runs only the valid branch (as recorded)."""
    from tests.comfy_server import captures

    user = await funded_user(pool, 10)
    workflow = captures.run_prompt("run_partially_invalid_prompt")
    async with ComfyServer() as comfy, running(pool, settings_for(tmp_path, [comfy.url])):
        job = await create_job(pool, user, workflow)
        assert await wait_status(pool, job, "succeeded", "failed") == "succeeded"
    events = await job_events(pool, job)
    assert "validation_warning" in log_kinds(events)
    done = next(e for e in events if isinstance(e, JobSucceeded))
    assert len(done.output_uris) == 1
    await assert_ledger(pool, owner, user, 9)
