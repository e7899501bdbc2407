"""Model files through the admin API, downloading from a local HTTP server.

The server runs on 127.0.0.1, which is loopback: installs from it only work because
the tests allowlist that host and its port (RCC_MODEL_HTTP_ALLOWLIST), exactly as an
admin would allowlist an internal mirror. Everything else about SSRF is checked with that in mind:
a redirect from the allowlisted host to a name that resolves to loopback, or to a
private address, is refused before any connection is made to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from comfy_ops.downloads import (
    CheckingResolver,
    DownloadPolicy,
    Failed,
    Refused,
    address_problem,
    allowlist,
    check_url,
    download,
)
from portal.app import create_app
from portal.routes.operations import operations_lifespan
from rcc.audit import verify
from rcc.config import load_settings
from rcc.domain.errors import Conflict
from rcc.projector.runtime import ProjectorWorker
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.ops_commands import RequestModelInstall
from tests.conftest import portal_client
from tests.model_server import FileServer, body, chunked, dropped, gated, redirect, trickle
from tests.portal_helpers import bearer

CAP = 200_000
GOOD = os.urandom(120_000)
OTHER = os.urandom(90_000)

MakeApp = Callable[..., Awaitable[Litestar]]


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    server = FileServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make_app(
    pool: asyncpg.Pool, projector: ProjectorWorker, tmp_path: Path
) -> AsyncIterator[MakeApp]:
    """Portal apps on the test database with their lifespan running (so downloads in
    flight are stopped with the app), configured by extra environment variables."""
    stack = AsyncExitStack()

    async def make(**env: str) -> Litestar:
        settings = load_settings(
            {
                "RCC_DATA_DIR": str(tmp_path / "data"),
                "RCC_SESSION_SECRET": "test-session-secret",
                "RCC_MODEL_MAX_BYTES": str(CAP),
                **env,
            }
        )
        app = create_app(settings, pool=pool)
        # The app's shutdown hook for downloads (the whole app.lifespan() holds an anyio
        # scope that must exit in the task that entered it, which fixtures do not do).
        await stack.enter_async_context(operations_lifespan(app))
        return app

    yield make
    await stack.aclose()


@pytest.fixture
async def app(make_app: MakeApp, files: FileServer) -> Litestar:
    return await make_app(RCC_MODEL_HTTP_ALLOWLIST=f"127.0.0.1:{files.port}")


@pytest.fixture
async def admin(pool: asyncpg.Pool) -> dict[str, str]:
    return await bearer(pool, "admin")


def models_dir(app: Litestar) -> Path:
    path: Path = app.state.settings.data_dir / "models"
    return path


def everything_in(root: Path) -> list[str]:
    """Every file under `root`, hidden ones included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def model(http: httpx.AsyncClient, headers: dict[str, str], name: str) -> dict[str, Any]:
    items = (await http.get("/admin/models", headers=headers)).json()["items"]
    return next((m for m in items if m["name"] == name), {})


async def settled(http: httpx.AsyncClient, headers: dict[str, str], name: str) -> dict[str, Any]:
    """The model's row once no download of it is in flight (bounded wait)."""
    for _ in range(400):
        found = await model(http, headers, name)
        if found and found["status"] != "downloading":
            return found
        await asyncio.sleep(0.025)
    raise AssertionError(f"{name} still downloading: {found}")


async def log_entries(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    return list((await http.get("/admin/logs", headers=headers)).json()["items"])


async def event_types(pool: asyncpg.Pool, name: str) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", f"model-{name}"
        )
    return [r["type"] for r in rows]


async def install(
    http: httpx.AsyncClient, headers: dict[str, str], **body_: object
) -> httpx.Response:
    return await http.post("/admin/models/install", json=body_, headers=headers)


async def test_install_with_progress_checksum_overwrite_and_delete(
    app: Litestar, files: FileServer, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    gate = asyncio.Event()
    files.routes["/v1/good.safetensors"] = gated(GOOD, gate)
    files.routes["/v2/other.bin"] = body(OTHER)
    async with portal_client(app) as http:
        url = files.url("/v1/good.safetensors") + "?token=secret-123"
        accepted = await install(http, admin, url=url, kind="loras")
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["name"] == "good.safetensors"
        assert accepted.json()["status"] == "downloading"
        assert "secret-123" not in accepted.json()["source"]

        # Progress is visible while the server holds back the second half.
        for _ in range(400):
            row = await model(http, admin, "good.safetensors")
            if row.get("bytes_done"):
                break
            await asyncio.sleep(0.025)
        assert row["status"] == "downloading"
        assert row["bytes_total"] == len(GOOD) and 0 < row["bytes_done"] < len(GOOD)
        hidden = everything_in(models_dir(app))
        assert all(Path(f).name.startswith(".") for f in hidden), "only a hidden temp file"
        gate.set()

        done = await settled(http, admin, "good.safetensors")
        assert done["status"] == "installed", done
        assert done["kind"] == "loras" and done["size_bytes"] == len(GOOD)
        assert done["sha256"] == hashlib.sha256(GOOD).hexdigest()
        assert done["installed_at"] and done["bytes_done"] is None
        assert "secret-123" not in (done["source"] or "")
        assert (models_dir(app) / "loras" / "good.safetensors").read_bytes() == GOOD
        assert everything_in(models_dir(app)) == ["loras/good.safetensors"]

        again = await install(http, admin, url=url, kind="loras")
        assert again.status_code == 409 and "overwrite" in again.json()["detail"]

        replaced = await install(
            http,
            admin,
            url=files.url("/v2/other.bin"),
            kind="loras",
            name="good.safetensors",
            overwrite=True,
        )
        assert replaced.status_code == 202, replaced.text
        done = await settled(http, admin, "good.safetensors")
        assert done["sha256"] == hashlib.sha256(OTHER).hexdigest()
        assert (models_dir(app) / "loras" / "good.safetensors").read_bytes() == OTHER
        dashboard = (await http.get("/admin/dashboard", headers=admin)).json()
        assert dashboard["models_installed"] == 1, "a replacement is not a second model"

        service = await bearer(pool, "service")
        assert (await http.get("/admin/models", headers=service)).status_code == 200
        assert (await install(http, service, url=url, kind="loras")).status_code == 403
        refused = await http.delete("/admin/models/good.safetensors", headers=service)
        assert refused.status_code == 403

        deleted = await http.delete("/admin/models/good.safetensors", headers=admin)
        assert deleted.status_code == 204, deleted.text
        assert everything_in(models_dir(app)) == []
        assert await model(http, admin, "good.safetensors") == {}
        gone = await http.delete("/admin/models/good.safetensors", headers=admin)
        assert gone.status_code == 404
        dashboard = (await http.get("/admin/dashboard", headers=admin)).json()
        assert dashboard["models_installed"] == 0

        log = [(e["action"], e["status"]) for e in await log_entries(http, admin)]
        assert log[:5] == [
            ("model.delete", "ok"),
            ("model.install", "installed"),
            ("model.install", "requested"),
            ("model.install", "installed"),
            ("model.install", "requested"),
        ]
        entry = (await log_entries(http, admin))[0]
        assert (entry["actor"], entry["ip"]) == ("token:admin", "127.0.0.1")
    assert await event_types(pool, "good.safetensors") == [
        "model_install_requested",
        "model_installed",
        "model_install_requested",
        "model_installed",
        "model_deleted",
    ]
    async with pool.acquire() as conn:
        assert (await verify(conn)).ok, "hash chains and stream heads hold"


@pytest.mark.parametrize(
    ("path", "behaviour", "error"),
    [
        ("/big.safetensors", body(os.urandom(CAP + 1)), f"more than the limit of {CAP}"),
        ("/big.safetensors", chunked(os.urandom(CAP + 50_000)), f"larger than the limit of {CAP}"),
        (
            "/cut.safetensors",
            dropped(150_000, os.urandom(60_000)),
            "download from 127.0.0.1 failed",
        ),
    ],
    ids=["content-length-over-cap", "chunked-over-cap", "connection-dropped-mid-body"],
)
async def test_failed_downloads_leave_nothing_installed(
    app: Litestar,
    files: FileServer,
    admin: dict[str, str],
    pool: asyncpg.Pool,
    path: str,
    behaviour: Any,
    error: str,
) -> None:
    files.routes[path] = behaviour
    name = path.lstrip("/")
    async with portal_client(app) as http:
        accepted = await install(http, admin, url=files.url(path), kind="checkpoints")
        assert accepted.status_code == 202, accepted.text
        row = await settled(http, admin, name)
        assert row["status"] == "failed" and error in row["error"], row
        assert row["sha256"] is None and row["size_bytes"] is None
        assert everything_in(models_dir(app)) == [], "no partial file, not even a hidden one"
        entry = (await log_entries(http, admin))[0]
        assert (entry["action"], entry["status"]) == ("model.install", "failed")
        assert error in entry["detail"]
        dashboard = (await http.get("/admin/dashboard", headers=admin)).json()
        assert dashboard["models_installed"] == 0
        # The record of a failed install can be cleared.
        assert (await http.delete(f"/admin/models/{name}", headers=admin)).status_code == 204
        assert await model(http, admin, name) == {}
    assert await event_types(pool, name) == [
        "model_install_requested",
        "model_install_failed",
        "model_deleted",
    ]


async def test_redirects_to_internal_addresses_are_refused(
    app: Litestar, files: FileServer, admin: dict[str, str]
) -> None:
    """The allowlisted host may redirect, but every hop is checked again: `localhost`
    is not allowlisted and resolves to loopback; 10.x and 169.254.x are private and
    link-local. None of the targets is ever contacted."""
    files.routes["/target.safetensors"] = body(GOOD)
    hops = {
        "/to-loopback-name.safetensors": (
            files.url("/target.safetensors", host="localhost", scheme="https"),
            "loopback address",
        ),
        "/to-private.safetensors": ("https://10.20.30.40/target.safetensors", "private address"),
        "/to-metadata.safetensors": (
            "http://169.254.169.254/latest/meta-data/x.safetensors",
            "plain http is allowed only for allowlisted hosts and ports",
        ),
        "/to-link-local.safetensors": (
            "https://169.254.169.254/x.safetensors",
            "link-local address",
        ),
    }
    for path, (target, _) in hops.items():
        files.routes[path] = redirect(target)
    async with portal_client(app) as http:
        for path in hops:
            accepted = await install(http, admin, url=files.url(path), kind="vae")
            assert accepted.status_code == 202, accepted.text
        for path, (_, error) in hops.items():
            row = await settled(http, admin, path.lstrip("/"))
            assert row["status"] == "failed", row
            assert "redirect to" in row["error"] and error in row["error"], row
    assert "/target.safetensors" not in files.hits
    assert everything_in(models_dir(app)) == []


async def test_urls_and_names_are_checked_before_anything_is_recorded(
    make_app: MakeApp, files: FileServer, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    # No allowlist: the local server is loopback, so off limits.
    app = await make_app(RCC_RATE_MODEL_INSTALL_PER_MIN="100")
    files.routes["/ok.safetensors"] = body(GOOD)
    refusals: list[tuple[dict[str, object], int, str]] = [
        ({"url": files.url("/ok.safetensors")}, 422, "plain http is allowed only"),
        ({"url": files.url("/ok.safetensors", scheme="https")}, 422, "loopback address"),
        (
            {"url": files.url("/ok.safetensors", host="localhost", scheme="https")},
            422,
            "loopback address",
        ),
        ({"url": "https://192.168.1.10/ok.safetensors"}, 422, "private address"),
        ({"url": "https://[::1]/ok.safetensors"}, 422, "loopback address"),
        ({"url": "https://[::ffff:127.0.0.1]/ok.safetensors"}, 422, "loopback address"),
        ({"url": "https://user:pw@example.com/ok.safetensors"}, 422, "credentials"),
        ({"url": "ftp://example.com/ok.safetensors"}, 422, "only https"),
        ({"url": "https://example.com/..%2F..%2Fetc%2Fpasswd.safetensors"}, 422, "plain file"),
        ({"url": "https://example.com/x", "name": "../evil.safetensors"}, 422, "plain file"),
        ({"url": "https://example.com/x", "name": "a/b.safetensors"}, 422, "plain file"),
        ({"url": "https://example.com/x", "name": ".hidden.safetensors"}, 422, "plain file"),
        ({"url": "https://example.com/x", "name": "..safetensors"}, 422, "plain file"),
        ({"url": "https://example.com/x", "name": "tool.exe"}, 422, "must end with"),
        ({"url": "https://example.com/model.safetensors", "kind": "scripts"}, 400, "kind"),
    ]
    async with portal_client(app) as http:
        for extra, status, text in refusals:
            answer = await install(http, admin, **{"kind": "loras", **extra})
            assert answer.status_code == status, (extra, answer.text)
            assert text in answer.json()["detail"], (extra, answer.json())
        assert (await http.get("/admin/models", headers=admin)).json()["items"] == []
    assert files.hits == []
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE type LIKE 'model%'") == 0
    assert everything_in(models_dir(app)) == []


async def test_installs_are_rate_limited_per_ip(make_app: MakeApp, admin: dict[str, str]) -> None:
    app = await make_app(RCC_RATE_MODEL_INSTALL_PER_MIN="2")
    body_ = {"url": "https://10.0.0.1/x.safetensors", "kind": "vae"}
    async with portal_client(app, ip="203.0.113.7") as http:
        answers = [await install(http, admin, **body_) for _ in range(3)]
    assert [a.status_code for a in answers] == [422, 422, 429]
    assert answers[2].json()["error"] == "rate_limited" and answers[2].headers["retry-after"]
    async with portal_client(app, ip="203.0.113.8") as other:
        assert (await install(other, admin, **body_)).status_code == 422, "per ip"


async def test_stopping_the_portal_cancels_downloads_as_failed(
    make_app: MakeApp, files: FileServer, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    app = await make_app(RCC_MODEL_HTTP_ALLOWLIST=f"127.0.0.1:{files.port}")
    files.routes["/slow.safetensors"] = gated(GOOD, asyncio.Event())  # never opens
    async with portal_client(app) as http:
        accepted = await install(http, admin, url=files.url("/slow.safetensors"), kind="unet")
        assert accepted.status_code == 202
        for _ in range(400):
            if (await model(http, admin, "slow.safetensors")).get("bytes_done"):
                break
            await asyncio.sleep(0.025)
    await app.state.model_installer.stop()
    assert app.state.model_installer.running == 0
    assert await event_types(pool, "slow.safetensors") == [
        "model_install_requested",
        "model_install_failed",
    ]
    async with pool.acquire() as conn:
        error = await conn.fetchval(
            "SELECT data->>'error' FROM events WHERE type = 'model_install_failed'"
        )
        assert await conn.fetchval("SELECT count(*) FROM model_downloads") == 0
    assert "portal stopped" in error
    assert everything_in(models_dir(app)) == []


async def test_a_dead_download_does_not_block_its_name(pool: asyncpg.Pool) -> None:
    """A download whose process died leaves a progress row nobody updates; the next
    request for the name closes it as failed instead of waiting for ever."""

    def request(install_id: str) -> RequestModelInstall:
        return RequestModelInstall(
            name="m.safetensors", kind="vae", install_id=install_id, source="https://x/m"
        )

    assert isinstance(await execute(pool, request("first")), Done)
    busy = await execute(pool, request("second"))
    assert isinstance(busy, Conflict) and "being installed" in busy.detail
    async with pool.acquire() as conn:
        await conn.execute("UPDATE model_downloads SET updated_at = now() - interval '1 hour'")
    taken = await execute(pool, request("third"))
    assert isinstance(taken, Done) and taken.result["abandoned"] == "first"
    assert await event_types(pool, "m.safetensors") == [
        "model_install_requested",
        "model_install_failed",
        "model_install_requested",
    ]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:192.168.1.1",
        "64:ff9b::a00:1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",  # 6to4 through 127.0.0.1
        "2002:c0a8:101::",  # 6to4 through 192.168.1.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert address_problem(address) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "151.101.1.69", "2606:4700:4700::1111", "2002:808:808::1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(address) is None


async def test_the_connection_uses_the_addresses_that_were_checked(tmp_path: Path) -> None:
    """The check lives in the connector's resolver: the answer that is checked is the
    answer that is connected to, so a name that resolves inside is refused at connect
    time even when nothing checked it before (no DNS-rebinding window)."""
    policy = DownloadPolicy(max_bytes=CAP)
    resolver = CheckingResolver(policy)
    with pytest.raises(Refused, match="loopback"):
        await resolver.resolve("localhost", 443)
    assert check_url("https://localhost/x.safetensors", policy)  # a name passes the form check
    with pytest.raises(Refused, match="localhost resolves to"):
        await download("https://localhost:9/x.safetensors", tmp_path / "x", policy)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("address", "embedded"),
    [("2002:7f00:1::1", "127.0.0.1"), ("64:ff9b::7f00:1", "127.0.0.1"),
     ("::ffff:192.168.1.1", "192.168.1.1")],
)  # fmt: skip
async def test_ipv6_addresses_embedding_internal_ones_are_refused_by_the_api(
    app: Litestar, admin: dict[str, str], address: str, embedded: str
) -> None:
    async with portal_client(app) as http:
        answer = await install(http, admin, url=f"https://[{address}]/m.safetensors", kind="vae")
    assert answer.status_code == 422, answer.text
    assert f"embeds {embedded}" in answer.json()["detail"]


async def test_the_allowlist_names_a_port_and_no_other(
    app: Litestar, files: FileServer, admin: dict[str, str]
) -> None:
    """127.0.0.1 is allowlisted with the mirror's port only: the same host's other ports
    (the service's own /metrics, here another local server) stay out of reach, directly
    and through a redirect from the allowlisted mirror."""
    service = FileServer()
    await service.start()
    try:
        service.routes["/metrics"] = body(b"rcc_secret_figures 1\n" * 100)
        elsewhere = service.url("/metrics")
        files.routes["/to-metrics.safetensors"] = redirect(elsewhere)
        files.routes["/to-metrics-https.safetensors"] = redirect(
            service.url("/metrics", scheme="https")
        )
        async with portal_client(app) as http:
            direct = await install(http, admin, url=elsewhere, kind="vae", name="m.safetensors")
            assert direct.status_code == 422, direct.text
            assert "allowlisted hosts and ports" in direct.json()["detail"]
            for path in ("/to-metrics.safetensors", "/to-metrics-https.safetensors"):
                accepted = await install(http, admin, url=files.url(path), kind="vae")
                assert accepted.status_code == 202, accepted.text
            plain = await settled(http, admin, "to-metrics.safetensors")
            assert plain["status"] == "failed" and "redirect to" in plain["error"], plain
            assert "allowlisted hosts and ports" in plain["error"], plain
            tls = await settled(http, admin, "to-metrics-https.safetensors")
            assert tls["status"] == "failed" and "loopback address" in tls["error"], tls
        assert service.hits == []
    finally:
        await service.close()


def test_allowlist_entries_are_host_and_port_pairs() -> None:
    assert allowlist(["127.0.0.1:8080", "[::1]:9000", "Mirror.LAN"]) == {
        ("127.0.0.1", 8080), ("::1", 9000), ("mirror.lan", 80), ("mirror.lan", 443),
    }  # fmt: skip
    with pytest.raises(SystemExit, match="RCC_MODEL_HTTP_ALLOWLIST"):
        load_settings({"RCC_MODEL_HTTP_ALLOWLIST": "mirror:http"})


async def test_redirects_to_other_schemes_fail_cleanly(
    app: Litestar, files: FileServer, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """file:, ftp: and data: targets are refused like any bad URL, with a sentence, and
    nothing in the logs carries a traceback (a file: target once raised inside redact)."""
    targets = {
        "/to-file.safetensors": ("file:///etc/passwd", "not file:"),
        "/to-ftp.safetensors": ("ftp://example.com/m.safetensors", "not ftp:"),
        "/to-data.safetensors": ("data:text/plain,hello", "not data:"),
    }
    for path, (target, _) in targets.items():
        files.routes[path] = redirect(target)
    caplog.set_level("INFO")
    async with portal_client(app) as http:
        for path in targets:
            accepted = await install(http, admin, url=files.url(path), kind="vae")
            assert accepted.status_code == 202, accepted.text
        for path, (_, text) in targets.items():
            row = await settled(http, admin, path.lstrip("/"))
            assert row["status"] == "failed", row
            assert "redirect to" in row["error"] and text in row["error"], row
            assert "internal error" not in row["error"], row
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert everything_in(models_dir(app)) == []


async def test_a_trickling_download_fails_below_the_minimum_rate(
    files: FileServer, tmp_path: Path
) -> None:
    """One byte every 50 ms stays inside every read timeout; the average rate does not."""
    files.routes["/drip.safetensors"] = trickle(GOOD[:2000], every_s=0.05)
    policy = DownloadPolicy(
        http_allowlist=allowlist([f"127.0.0.1:{files.port}"]),
        max_bytes=CAP,
        min_rate_bytes_s=1000,
        rate_grace_s=0.5,
    )
    started = asyncio.get_running_loop().time()
    with pytest.raises(Failed, match=r"too slow: .* under the minimum of 1000 bytes/s"):
        await download(files.url("/drip.safetensors"), tmp_path / "drip", policy)
    assert asyncio.get_running_loop().time() - started < 5  # not the 100 s it would drip


async def test_a_download_past_the_overall_limit_fails(
    make_app: MakeApp, files: FileServer, admin: dict[str, str]
) -> None:
    app = await make_app(
        RCC_MODEL_HTTP_ALLOWLIST=f"127.0.0.1:{files.port}",
        RCC_MODEL_MAX_SECONDS="1",
        RCC_MODEL_MIN_RATE_BYTES_S="0",  # only the overall limit can stop it
    )
    files.routes["/stuck.safetensors"] = gated(GOOD, asyncio.Event())  # never opens
    async with portal_client(app) as http:
        accepted = await install(http, admin, url=files.url("/stuck.safetensors"), kind="vae")
        assert accepted.status_code == 202, accepted.text
        row = await settled(http, admin, "stuck.safetensors")
    assert row["status"] == "failed" and "longer than 1 s" in row["error"], row
    assert everything_in(models_dir(app)) == []


async def test_a_download_that_would_fill_the_disk_is_refused(
    make_app: MakeApp, files: FileServer, admin: dict[str, str]
) -> None:
    """The margin to keep free is set above the disk's free space, so any file is too
    big: with a Content-Length before the body is read, without one before it is written."""
    app = await make_app(
        RCC_MODEL_HTTP_ALLOWLIST=f"127.0.0.1:{files.port}",
        RCC_MODEL_DISK_MARGIN_BYTES=str(1 << 60),
    )
    files.routes["/sized.safetensors"] = body(GOOD)
    files.routes["/unsized.safetensors"] = chunked(GOOD)
    async with portal_client(app) as http:
        for name in ("sized.safetensors", "unsized.safetensors"):
            accepted = await install(http, admin, url=files.url(f"/{name}"), kind="vae")
            assert accepted.status_code == 202, accepted.text
        for name in ("sized.safetensors", "unsized.safetensors"):
            row = await settled(http, admin, name)
            assert row["status"] == "failed" and "not enough free disk" in row["error"], row
    assert everything_in(models_dir(app)) == []
