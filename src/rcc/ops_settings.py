"""Settings of the admin operations: the ComfyUI container and model downloads.

Part of `rcc.config.Settings` (fields `comfyui` and `models`); see .env.example.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import msgspec

DEFAULT_MODEL_MAX_BYTES = 50 << 30  # the largest checkpoints are a few tens of GB
DEFAULT_MODEL_MAX_SECONDS = 4 * 3600  # 50 GiB at 4 MB/s, with room to spare
DEFAULT_MODEL_MIN_RATE = 32 << 10  # bytes/s on average: a drip this slow is an attack
DEFAULT_MODEL_DISK_MARGIN = 1 << 30  # what a download must leave free on its disk


class ComfyuiContainerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ComfyUI container that POST /admin/comfyui/start creates.

    `bind` is the host address its port is published on: loopback or a private
    address only, never all interfaces (ComfyUI has no authentication of its own).
    """

    docker_host: str = ""  # DOCKER_HOST; empty: the engine's usual sockets
    image: str = "rcc-comfyui:latest"
    name: str = "rcc-comfyui"
    gpu: str = "all"  # "all", "none", or device ids such as "0,1"
    bind: str = "127.0.0.1"
    port: int = 8188
    app_dir: str = "/opt/ComfyUI"  # where ComfyUI lives inside the image
    stop_timeout_s: int = 30

    @property
    def url(self) -> str:
        """Where the portal reaches the container's ComfyUI."""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.port}"


class ModelStoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Model downloads: https only, except for `host:port` entries of `http_allowlist`
    (a bare host means its default ports), which may also be private addresses (an
    internal mirror); at most `max_bytes` per file, within `max_seconds`, never slower
    than `min_rate_bytes_s` on average, and leaving `disk_margin_bytes` free."""

    http_allowlist: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MODEL_MAX_BYTES
    max_seconds: int = DEFAULT_MODEL_MAX_SECONDS
    min_rate_bytes_s: int = DEFAULT_MODEL_MIN_RATE
    disk_margin_bytes: int = DEFAULT_MODEL_DISK_MARGIN


def internal_address_problem(bind: str) -> str | None:
    """Why `bind` must not publish ComfyUI, or None for a loopback or private address."""
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        return f"{bind!r} is not an IP address"
    if address.is_unspecified:
        return f"{bind} would publish ComfyUI on every interface"
    if not (address.is_loopback or address.is_private) or address.is_multicast:
        return f"{bind} is not a loopback or private address"
    return None


def _int(env: dict[str, str], name: str, default: int, least: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value < least:
        raise SystemExit(f"{name} must be at least {least}, got {value}")
    return value


def load_comfyui_container(env: dict[str, str]) -> ComfyuiContainerSettings:
    bind = env.get("RCC_COMFYUI_BIND", "").strip() or "127.0.0.1"
    if problem := internal_address_problem(bind):
        raise SystemExit(f"RCC_COMFYUI_BIND: {problem}")
    gpu = env.get("RCC_COMFYUI_GPU", "").strip().lower() or "all"
    return ComfyuiContainerSettings(
        docker_host=env.get("DOCKER_HOST", "").strip(),
        image=env.get("RCC_COMFYUI_IMAGE", "").strip() or "rcc-comfyui:latest",
        name=env.get("RCC_COMFYUI_CONTAINER", "").strip() or "rcc-comfyui",
        gpu=gpu,
        bind=bind,
        port=_int(env, "RCC_COMFYUI_PORT", 8188, least=1),
        app_dir=(env.get("RCC_COMFYUI_APP_DIR", "").strip() or "/opt/ComfyUI").rstrip("/"),
        stop_timeout_s=_int(env, "RCC_COMFYUI_STOP_TIMEOUT_S", 30),
    )


def _allowlist_entry_problem(entry: str) -> str | None:
    """Why an RCC_MODEL_HTTP_ALLOWLIST entry is not `host`, `host:port` or `[v6]:port`."""
    try:
        parts = urlsplit(f"//{entry}")
        port = parts.port
    except ValueError as error:
        return f"{entry!r}: {error}"
    if not parts.hostname or parts.path or parts.username or (port is not None and port < 1):
        return f"{entry!r} is not host or host:port"
    return None


def load_model_store(env: dict[str, str]) -> ModelStoreSettings:
    hosts = tuple(
        host.strip().lower()
        for host in env.get("RCC_MODEL_HTTP_ALLOWLIST", "").split(",")
        if host.strip()
    )
    for host in hosts:
        if problem := _allowlist_entry_problem(host):
            raise SystemExit(f"RCC_MODEL_HTTP_ALLOWLIST: {problem}")
    return ModelStoreSettings(
        http_allowlist=hosts,
        max_bytes=_int(env, "RCC_MODEL_MAX_BYTES", DEFAULT_MODEL_MAX_BYTES, least=1),
        max_seconds=_int(env, "RCC_MODEL_MAX_SECONDS", DEFAULT_MODEL_MAX_SECONDS, least=1),
        min_rate_bytes_s=_int(env, "RCC_MODEL_MIN_RATE_BYTES_S", DEFAULT_MODEL_MIN_RATE),
        disk_margin_bytes=_int(env, "RCC_MODEL_DISK_MARGIN_BYTES", DEFAULT_MODEL_DISK_MARGIN),
    )
