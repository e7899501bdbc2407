"""The adapter's settings, read from the environment (documented in .env.example)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from rcc.domain.backend_tags import BadTagSetting, parse_job_type_tags
from rcc.domain.backends import normalise_url
from rcc.domain.errors import DomainError

DEFAULT_TIMEOUTS_S = {"IMAGE_TASK": 600.0, "VIDEO_TASK": 3600.0}


class AdapterSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the adapter reaches ComfyUI and how patient it is.

    - `urls`: COMFYUI_URLS; empty means jobs wait queued (the status says why).
    - `slots`: prompts in flight per backend (one runs, the next waits in ComfyUI's queue
      so the GPU never idles between prompts).
    - `timeouts_s`: per job type, counted from submission; past it the prompt is
      interrupted and the job fails (credits released).
    - `retries`/`retry_base_s`: a backend that does not answer is asked again with
      exponential backoff (base, 2x base, 4x base, ...) `retries` times, then the job fails.
    """

    urls: tuple[str, ...] = ()
    outputs_dir: Path = Path(".rcc/outputs")
    uploads_dir: Path = Path(".rcc/uploads")  # users' uploads, sent before the prompt (h4)
    name: str = "comfy_adapter"
    slots: int = 2
    timeouts_s: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_TIMEOUTS_S))
    retries: int = 6
    retry_base_s: float = 0.5
    retry_max_s: float = 10.0
    request_timeout_s: float = 10.0
    reconnect_max_s: float = 5.0  # the longest pause between websocket reconnects
    poll_s: float = 10.0  # ask /queue and /history this often even when the socket is quiet
    heartbeat_s: float = 5.0
    max_output_bytes: int = 4 << 30
    log_flush_s: float = 5.0  # a long run's log lines reach the job at least this often
    # The GPU pool (docs/BACKENDS.md): how often the pool is re-read and each backend's
    # /system_stats polled, and the tags a job type requires (RCC_JOB_TYPE_TAGS).
    pool_refresh_s: float = 1.0
    health_s: float = 5.0
    job_type_tags: dict[str, frozenset[str]] = msgspec.field(default_factory=dict)
    # The GPU pool (docs/GPU_POOL.md): leases, claims, attempts, the running limit.
    lease_s: float = 10.0  # a dead adapter's jobs are taken over this long after its last renewal
    claim_poll_s: float = 0.1  # how often an idle adapter looks for work in the shared queue
    max_attempts: int = 3  # submissions per job when ComfyUI restarts and loses its prompts
    max_running_per_user: int = 2  # a user's jobs on GPU slots at once (rcc/queue_limits.py)

    def timeout_for(self, job_type: str) -> float:
        return self.timeouts_s.get(job_type, max(self.timeouts_s.values(), default=3600.0))


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive, got {raw!r}")
    return value


def parse_urls(raw: str) -> tuple[str, ...]:
    """COMFYUI_URLS: comma-separated base URLs, without trailing slashes, each once; each
    must be one the GPU pool accepts (scheme, host and port), or the adapter will not start."""
    seen: dict[str, None] = {}
    for item in raw.split(","):
        if item.strip():
            url = normalise_url(item)
            if isinstance(url, DomainError):
                raise SystemExit(f"COMFYUI_URLS: {url.detail}")
            seen[url] = None
    return tuple(seen)


def load_adapter_settings(
    data_dir: Path, env: dict[str, str] | None = None, *, max_running_per_user: int = 2
) -> AdapterSettings:
    """Adapter settings from the environment; outputs go to $RCC_DATA_DIR/outputs."""
    env = dict(os.environ if env is None else env)
    return AdapterSettings(
        urls=parse_urls(env.get("COMFYUI_URLS", "")),
        outputs_dir=data_dir / "outputs",
        uploads_dir=data_dir / "uploads",
        slots=int(_float(env, "RCC_COMFYUI_SLOTS", 2)),
        timeouts_s={
            "IMAGE_TASK": _float(env, "RCC_TIMEOUT_IMAGE_S", DEFAULT_TIMEOUTS_S["IMAGE_TASK"]),
            "VIDEO_TASK": _float(env, "RCC_TIMEOUT_VIDEO_S", DEFAULT_TIMEOUTS_S["VIDEO_TASK"]),
        },
        retries=int(_float(env, "RCC_COMFYUI_RETRIES", 6)),
        retry_base_s=_float(env, "RCC_COMFYUI_RETRY_BASE_S", 0.5),
        request_timeout_s=_float(env, "RCC_COMFYUI_REQUEST_TIMEOUT_S", 10.0),
        poll_s=_float(env, "RCC_COMFYUI_POLL_S", 10.0),
        pool_refresh_s=_float(env, "RCC_POOL_REFRESH_S", 1.0),
        health_s=_float(env, "RCC_BACKEND_HEALTH_S", 5.0),
        job_type_tags=_job_type_tags(env.get("RCC_JOB_TYPE_TAGS", "")),
        lease_s=_float(env, "RCC_ADAPTER_LEASE_S", 10.0),
        max_attempts=int(_float(env, "RCC_COMFYUI_MAX_ATTEMPTS", 3)),
        max_running_per_user=max_running_per_user,
    )


def _job_type_tags(raw: str) -> dict[str, frozenset[str]]:
    try:
        return parse_job_type_tags(raw)
    except BadTagSetting as error:
        raise SystemExit(str(error)) from None
