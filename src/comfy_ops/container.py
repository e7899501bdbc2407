"""The ComfyUI container, through the Docker Engine API (podman's service works too).

`start` creates the container from the configured image (or reuses it), with the GPU
device request, volumes for models, ComfyUI's output and workflows under
$RCC_DATA_DIR, and its port published on an internal address only: ComfyUI has no
authentication, so it is never reachable without the portal in front (PRD NFR-S1).
An existing container of that name that RCC made but with other settings (an old
image, another binding) is replaced; one RCC did not make is left alone.

`status` reports the engine's view of the container and, when it runs, what ComfyUI
itself says on /system_stats and /queue; a ComfyUI that does not answer is reported,
not raised. Engine failures raise `EngineFailure` with the HTTP status to answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import msgspec

from rcc.ops_settings import ComfyuiContainerSettings, internal_address_problem

COMFYUI_PORT = "8188/tcp"  # ComfyUI's port inside the container
MANAGED_LABEL = "rcc.managed"
PROBE_TIMEOUT_S = 3.0
# Where an engine socket usually is when DOCKER_HOST is not set.
DEFAULT_SOCKETS = ("/run/podman/podman.sock", "/var/run/docker.sock", "/run/docker.sock")


class EngineFailure(Exception):
    """The operation failed; `status` and `code` are what the portal answers."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class PortBinding(msgspec.Struct, frozen=True, kw_only=True):
    container_port: str
    host_ip: str
    host_port: str


class ComfyuiProbe(msgspec.Struct, frozen=True, kw_only=True):
    """What ComfyUI answered (or why it did not)."""

    url: str
    reachable: bool
    system_stats: dict[str, Any] | None = None
    queue_running: int | None = None
    queue_pending: int | None = None
    error: str | None = None


class ContainerStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    image: str
    exists: bool
    state: str  # the engine's word: running, exited, created, ... or "absent"
    running: bool = False
    container_id: str | None = None
    started_at: str | None = None
    ports: list[PortBinding] = []
    comfyui: ComfyuiProbe | None = None


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What an operation did, in a sentence, and the container afterwards."""

    detail: str
    container: ContainerStatus


def host_dirs(data_dir: Path) -> dict[str, Path]:
    """The host directories mounted into ComfyUI, by what they hold.

    Models are the ones /admin/models installs. ComfyUI's own output stays apart from
    the outputs store (the adapter copies each job's files there through /view), so
    a workflow can never write into another job's outputs.
    """
    return {
        "models": data_dir / "models",
        "output": data_dir / "comfyui" / "output",
        "workflows": data_dir / "comfyui" / "workflows",
    }


def _binds(settings: ComfyuiContainerSettings, data_dir: Path) -> list[str]:
    dirs = host_dirs(data_dir)
    app = settings.app_dir
    return [
        f"{dirs['models']}:{app}/models:rw",
        f"{dirs['output']}:{app}/output:rw",
        f"{dirs['workflows']}:{app}/user/default/workflows:rw",
    ]


def _device_requests(gpu: str) -> list[dict[str, Any]]:
    if gpu == "none":
        return []
    request: dict[str, Any] = {"Driver": "nvidia", "Capabilities": [["gpu"]]}
    if gpu == "all":
        request["Count"] = -1
    else:
        request["DeviceIDs"] = [d.strip() for d in gpu.split(",") if d.strip()]
    return [request]


def container_config(settings: ComfyuiContainerSettings, data_dir: Path) -> dict[str, Any]:
    """The create request: image, labels, GPU, volumes and the internal-only port."""
    if problem := internal_address_problem(settings.bind):
        raise EngineFailure(500, "unsafe_binding", problem)
    host_config: dict[str, Any] = {
        "PortBindings": {COMFYUI_PORT: [{"HostIp": settings.bind, "HostPort": str(settings.port)}]},
        "Binds": _binds(settings, data_dir),
        "RestartPolicy": {"Name": "unless-stopped"},
    }
    if devices := _device_requests(settings.gpu):
        host_config["DeviceRequests"] = devices
    return {
        "Image": settings.image,
        "Labels": {MANAGED_LABEL: "true"},
        "ExposedPorts": {COMFYUI_PORT: {}},
        "HostConfig": host_config,
    }


def _bindings(info: dict[str, Any]) -> list[PortBinding]:
    found = (info.get("HostConfig") or {}).get("PortBindings") or {}
    return [
        PortBinding(
            container_port=port, host_ip=b.get("HostIp") or "", host_port=b.get("HostPort") or ""
        )
        for port, bindings in sorted(found.items())
        for b in bindings or []
    ]


def _mounts(binds: list[str]) -> list[tuple[str, ...]]:
    """(host path, container path) of each bind; engines add their own options."""
    return sorted(tuple(b.split(":")[:2]) for b in binds)


def _mismatch(info: dict[str, Any], settings: ComfyuiContainerSettings, data_dir: Path) -> str:
    """Why an existing container differs from what we would create ('' when it does not)."""
    if (info.get("Config") or {}).get("Image") != settings.image:
        return f"its image is {(info.get('Config') or {}).get('Image')}"
    want = [
        PortBinding(
            container_port=COMFYUI_PORT, host_ip=settings.bind, host_port=str(settings.port)
        )
    ]
    if _bindings(info) != want:
        shown = ", ".join(f"{b.host_ip or '*'}:{b.host_port}" for b in _bindings(info))
        return f"its port is published on {shown or 'nothing'}"
    if _mounts((info.get("HostConfig") or {}).get("Binds") or []) != _mounts(
        _binds(settings, data_dir)
    ):
        return "its volumes differ"
    return ""


class ComfyuiContainer:
    """Start, stop, restart and inspect the one ComfyUI container."""

    def __init__(self, settings: ComfyuiContainerSettings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir

    @asynccontextmanager
    async def _engine(self) -> AsyncIterator[aiodocker.Docker]:
        url = self.settings.docker_host or _default_socket()
        if url is None:
            raise EngineFailure(
                503, "docker_unavailable", "DOCKER_HOST is not set and no engine socket was found"
            )
        timeout = aiohttp.ClientTimeout(total=self.settings.stop_timeout_s + 60)
        try:
            docker = aiodocker.Docker(url=url, timeout=timeout)
        except ValueError as error:
            raise EngineFailure(503, "docker_unavailable", f"DOCKER_HOST {url}: {error}") from None
        try:
            yield docker
        except aiodocker.DockerError as error:
            raise _failure(error) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise EngineFailure(
                503, "docker_unavailable", f"the container engine at {url} failed: {error}"
            ) from None
        finally:
            await docker.close()

    async def _find(self, docker: aiodocker.Docker) -> aiodocker.containers.DockerContainer | None:
        try:
            return await docker.containers.get(self.settings.name)
        except aiodocker.DockerError as error:
            if error.status == 404:
                return None
            raise

    async def start(self) -> Outcome:
        async with self._engine() as docker:
            detail = await self._start(docker)
            return Outcome(detail=detail, container=await self._status(docker, probe=False))

    async def stop(self) -> Outcome:
        async with self._engine() as docker:
            container = await self._find(docker)
            if container is None:
                detail = "no container to stop"
            elif not (await container.show())["State"].get("Running"):
                detail = "was not running"
            else:
                await container.stop(t=self.settings.stop_timeout_s)
                detail = "stopped"
            return Outcome(detail=detail, container=await self._status(docker, probe=False))

    async def restart(self) -> Outcome:
        """Stop (if running), then start: the same checks as a start, so a container
        with outdated settings is replaced rather than restarted as it was."""
        async with self._engine() as docker:
            container = await self._find(docker)
            stopped = ""
            if container is not None and (await container.show())["State"].get("Running"):
                await container.stop(t=self.settings.stop_timeout_s)
                stopped = "stopped, then "
            detail = stopped + await self._start(docker)
            return Outcome(detail=detail, container=await self._status(docker, probe=False))

    async def status(self) -> ContainerStatus:
        async with self._engine() as docker:
            return await self._status(docker, probe=True)

    async def _start(self, docker: aiodocker.Docker) -> str:
        container = await self._find(docker)
        replaced = ""
        if container is not None:
            info = await container.show()
            if (info.get("Config") or {}).get("Labels", {}).get(MANAGED_LABEL) != "true":
                raise EngineFailure(
                    409,
                    "container_conflict",
                    f"a container named {self.settings.name} exists that RCC did not create; "
                    "remove it or set RCC_COMFYUI_CONTAINER",
                )
            if why := _mismatch(info, self.settings, self.data_dir):
                await container.delete(force=True)
                container, replaced = None, f"replaced the old container ({why}); "
            elif info["State"].get("Running"):
                return "already running"
        if container is None:
            for path in host_dirs(self.data_dir).values():
                path.mkdir(parents=True, exist_ok=True)
            config = container_config(self.settings, self.data_dir)
            container = await docker.containers.create(config, name=self.settings.name)
            await container.start()
            return f"{replaced}created and started from {self.settings.image}"
        await container.start()
        return "started the existing container"

    async def _status(self, docker: aiodocker.Docker, *, probe: bool) -> ContainerStatus:
        container = await self._find(docker)
        if container is None:
            return ContainerStatus(
                name=self.settings.name, image=self.settings.image, exists=False, state="absent"
            )
        info = await container.show()
        state = info.get("State") or {}
        running = bool(state.get("Running"))
        return ContainerStatus(
            name=self.settings.name,
            image=(info.get("Config") or {}).get("Image") or self.settings.image,
            exists=True,
            state=str(state.get("Status") or "unknown"),
            running=running,
            container_id=info.get("Id"),
            started_at=state.get("StartedAt") if running else None,
            ports=_bindings(info),
            comfyui=await probe_comfyui(self.settings.url) if probe and running else None,
        )


def _default_socket() -> str | None:
    return next((f"unix://{p}" for p in DEFAULT_SOCKETS if Path(p).is_socket()), None)


def _failure(error: aiodocker.DockerError) -> EngineFailure:
    # aiodocker reports a socket it cannot reach as status 900.
    if error.status >= 900:
        return EngineFailure(503, "docker_unavailable", f"container engine: {error.message}")
    return EngineFailure(502, "docker_error", f"container engine: {error.message}")


async def probe_comfyui(url: str) -> ComfyuiProbe:
    """ComfyUI's /system_stats and /queue; an error becomes `reachable: false`."""
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            stats, queue = await asyncio.gather(
                _get_json(http, f"{url}/system_stats"), _get_json(http, f"{url}/queue")
            )
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:  # bad JSON too
        return ComfyuiProbe(url=url, reachable=False, error=str(error) or type(error).__name__)
    return ComfyuiProbe(
        url=url,
        reachable=True,
        system_stats=stats,
        queue_running=len(queue.get("queue_running") or []),
        queue_pending=len(queue.get("queue_pending") or []),
    )


async def _get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as response:
        response.raise_for_status()
        body = msgspec.json.decode(await response.read())
    if not isinstance(body, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return body
