"""ComfyUI container operations against a real container engine.

tests/podman/setup.sh (run by `.ci/run`, and again here, idempotently) installs podman,
starts its Docker-compatible API service and builds a small local image that plays
ComfyUI: busybox httpd answering /system_stats and /queue on port 8188. The tests go
through the portal's HTTP endpoints, the very code path admins use, and check the
engine's own view independently with aiodocker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiodocker
import asyncpg
import httpx
import pytest
from litestar import Litestar

from portal.app import create_app
from rcc.audit import verify
from rcc.config import load_settings
from rcc.projector.runtime import ProjectorWorker
from tests.conftest import REPO, portal_client
from tests.portal_helpers import bearer

SOCKET = os.environ.get("RCC_PODMAN_SOCK", "/run/rcc-podman/podman.sock")
IMAGE = os.environ.get("RCC_TEST_COMFYUI_IMAGE", "localhost/rcc-fake-comfyui:1")

MakeApp = Callable[..., Litestar]


@pytest.fixture(scope="session")
def docker_host() -> str:
    """The podman service's DOCKER_HOST, set up (idempotently) by tests/podman/setup.sh."""
    done = subprocess.run(
        ["bash", str(REPO / "tests" / "podman" / "setup.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RCC_PODMAN_SOCK": SOCKET, "RCC_TEST_COMFYUI_IMAGE": IMAGE},
    )
    assert done.returncode == 0, f"tests/podman/setup.sh failed:\n{done.stdout}\n{done.stderr}"
    return f"unix://{SOCKET}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # no packet is sent for UDP connect
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture
async def container_name(docker_host: str) -> AsyncIterator[str]:
    """A container name of this test's own; the container is removed afterwards."""
    name = f"rcc-test-comfyui-{uuid.uuid4().hex[:10]}"
    yield name
    async with aiodocker.Docker(url=docker_host) as docker:
        try:
            await (await docker.containers.get(name)).delete(force=True)
        except aiodocker.DockerError as error:
            assert error.status == 404


@pytest.fixture
def make_app(
    pool: asyncpg.Pool,
    projector: ProjectorWorker,
    tmp_path: Path,
    docker_host: str,
    container_name: str,
) -> MakeApp:
    port = free_port()

    def make(**env: str) -> Litestar:
        settings = load_settings(
            {
                "RCC_DATA_DIR": str(tmp_path / "data"),
                "RCC_SESSION_SECRET": "test-session-secret",
                "DOCKER_HOST": docker_host,
                "RCC_COMFYUI_IMAGE": IMAGE,
                "RCC_COMFYUI_CONTAINER": container_name,
                "RCC_COMFYUI_PORT": str(port),
                "RCC_COMFYUI_GPU": "none",  # no GPU on CI machines
                "RCC_COMFYUI_STOP_TIMEOUT_S": "5",
                **env,
            }
        )
        return create_app(settings, pool=pool)

    return make


async def inspect(docker_host: str, name: str) -> dict[str, Any]:
    async with aiodocker.Docker(url=docker_host) as docker:
        info: dict[str, Any] = await (await docker.containers.get(name)).show()
        return info


async def comfyui_log(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    entries = (await http.get("/admin/logs", headers=headers)).json()["items"]
    return [e for e in entries if e["action"].startswith("comfyui.")]


async def reachable_status(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """GET /admin/comfyui/status until ComfyUI answers (bounded: it starts in a moment)."""
    for _ in range(200):
        status: dict[str, Any] = (await http.get("/admin/comfyui/status", headers=headers)).json()
        if (status.get("comfyui") or {}).get("reachable"):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"ComfyUI never answered: {status}")


async def test_start_status_restart_stop_through_the_portal(
    make_app: MakeApp, pool: asyncpg.Pool, docker_host: str, container_name: str
) -> None:
    app = make_app()
    admin = await bearer(pool, "admin")
    service = await bearer(pool, "service")
    port = str(app.state.settings.comfyui.port)
    async with portal_client(app) as http:
        before = (await http.get("/admin/comfyui/status", headers=service)).json()
        assert (before["exists"], before["state"], before["running"]) == (False, "absent", False)
        refused = await http.post("/admin/comfyui/start", headers=service)
        assert refused.status_code == 403, "service tokens only read"

        started = await http.post("/admin/comfyui/start", headers=admin)
        assert started.status_code == 200, started.text
        body = started.json()
        assert (body["action"], body["status"]) == ("start", "ok")
        assert body["detail"] == f"created and started from {IMAGE}"
        assert body["container"]["running"] is True
        assert body["container"]["ports"] == [
            {"container_port": "8188/tcp", "host_ip": "127.0.0.1", "host_port": port}
        ]

        # The engine's own view: published on loopback only, no GPU request here,
        # the three volumes under the data directory.
        info = await inspect(docker_host, container_name)
        assert info["HostConfig"]["PortBindings"] == {
            "8188/tcp": [{"HostIp": "127.0.0.1", "HostPort": port}]
        }
        published = [b for bs in info["NetworkSettings"]["Ports"].values() for b in bs or []]
        assert published and all(b["HostIp"] == "127.0.0.1" for b in published)
        assert not info["HostConfig"].get("DeviceRequests")
        data = app.state.settings.data_dir
        mounted = sorted(b.split(":")[0] for b in info["HostConfig"]["Binds"])
        assert mounted == [str(data / "comfyui" / d) for d in ("output", "workflows")] + [
            str(data / "models")
        ]

        status = await reachable_status(http, service)
        assert status["state"] == "running" and status["container_id"] == info["Id"]
        assert status["comfyui"]["system_stats"]["system"]["comfyui_version"] == "0.3.64"
        assert (status["comfyui"]["queue_running"], status["comfyui"]["queue_pending"]) == (0, 0)
        if (outside := outside_address()) is not None:
            with pytest.raises(OSError):  # nothing answers on the machine's other address
                socket.create_connection((outside, int(port)), timeout=2).close()

        again = (await http.post("/admin/comfyui/start", headers=admin)).json()
        assert again["detail"] == "already running"

        restarted = (await http.post("/admin/comfyui/restart", headers=admin)).json()
        assert restarted["detail"] == "stopped, then started the existing container"
        assert restarted["container"]["running"] is True
        assert (await inspect(docker_host, container_name))["Id"] == info["Id"], "reused"
        await reachable_status(http, admin)

        stopped = (await http.post("/admin/comfyui/stop", headers=admin)).json()
        assert (stopped["status"], stopped["detail"]) == ("ok", "stopped")
        after = (await http.get("/admin/comfyui/status", headers=admin)).json()
        assert (after["exists"], after["running"], after["comfyui"]) == (True, False, None)
        assert after["state"] in {"exited", "stopped"}
        idle = (await http.post("/admin/comfyui/stop", headers=admin)).json()
        assert idle["detail"] == "was not running"

        log = await comfyui_log(http, admin)
        assert [(e["action"], e["status"]) for e in reversed(log)] == [
            ("comfyui.start", "ok"),
            ("comfyui.start", "ok"),
            ("comfyui.restart", "ok"),
            ("comfyui.stop", "ok"),
            ("comfyui.stop", "ok"),
        ]
        assert all((e["actor"], e["ip"]) == ("token:admin", "127.0.0.1") for e in log)
        assert container_name in log[-1]["detail"] and "created and started" in log[-1]["detail"]
    async with pool.acquire() as conn:
        report = await verify(conn)
        assert report.ok, report.problems
        stream = await conn.fetch(
            "SELECT type, metadata FROM events WHERE stream_id = 'ops-comfyui' ORDER BY version"
        )
    assert [r["type"] for r in stream] == ["comfyui_operated"] * 5
    assert all(r["metadata"]["actor"] == "token:admin" for r in stream)


async def test_an_exposed_container_is_replaced_and_a_foreign_one_left_alone(
    make_app: MakeApp, pool: asyncpg.Pool, docker_host: str, container_name: str
) -> None:
    app = make_app()
    admin = await bearer(pool, "admin")
    port = str(app.state.settings.comfyui.port)
    async with aiodocker.Docker(url=docker_host) as docker:  # created, never started
        await docker.containers.create(
            {
                "Image": IMAGE,
                "Labels": {"rcc.managed": "true"},
                "ExposedPorts": {"8188/tcp": {}},
                "HostConfig": {"PortBindings": {"8188/tcp": [{"HostIp": "", "HostPort": port}]}},
            },
            name=container_name,
        )
    async with portal_client(app) as http:
        started = (await http.post("/admin/comfyui/start", headers=admin)).json()
        assert started["detail"].startswith("replaced the old container (its port is published on")
        assert started["container"]["ports"][0]["host_ip"] == "127.0.0.1"

    async with aiodocker.Docker(url=docker_host) as docker:
        await (await docker.containers.get(container_name)).delete(force=True)
        await docker.containers.create({"Image": IMAGE}, name=container_name)  # not ours
    async with portal_client(app) as http:
        refused = await http.post("/admin/comfyui/restart", headers=admin)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "container_conflict"
        entry = (await comfyui_log(http, admin))[0]
        assert (entry["action"], entry["status"]) == ("comfyui.restart", "failed")
    assert not (await inspect(docker_host, container_name))["State"]["Running"]


async def test_engine_failures_are_clear_errors_and_recorded(
    make_app: MakeApp, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    admin = await bearer(pool, "admin")
    cases: list[tuple[dict[str, str], int, str, str]] = [
        ({"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}, 503, "docker_unavailable", ""),
        ({"RCC_COMFYUI_IMAGE": "localhost/rcc-no-such-image:1"}, 502, "docker_error", "image"),
    ]
    for env, status, code, mentions in cases:
        app = make_app(**env)
        async with portal_client(app) as http:
            answer = await http.post("/admin/comfyui/start", headers=admin)
            assert answer.status_code == status, answer.text
            body = answer.json()
            assert (body["error"], body["action"]) == (code, "start")
            assert mentions in body["detail"]
            entry = (await comfyui_log(http, admin))[0]
            assert (entry["action"], entry["status"]) == ("comfyui.start", "failed")
            assert body["detail"] in entry["detail"]
            if status == 503:
                read = await http.get("/admin/comfyui/status", headers=admin)
                assert read.status_code == 503 and read.json()["error"] == code


def test_setup_script_is_idempotent(docker_host: str) -> None:
    """A second run finds everything in place and changes nothing."""
    done = subprocess.run(
        ["bash", str(REPO / "tests" / "podman" / "setup.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RCC_PODMAN_SOCK": SOCKET, "RCC_TEST_COMFYUI_IMAGE": IMAGE},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"podman service at {docker_host}; image {IMAGE}"
