"""Settings of templates, uploads and workflow validation (issue 15)."""

from __future__ import annotations

from typing import Literal

import msgspec

RawWorkflows = Literal["all", "admins"]


class TemplateSettings(msgspec.Struct, frozen=True, kw_only=True):
    # RCC_RAW_WORKFLOWS: who may POST a raw {type, workflow}. `all` keeps version 1's
    # behaviour; `admins` leaves users to templates. Admins are always allowed.
    raw_workflows: RawWorkflows = "all"
    max_upload_bytes: int = 50 * 1024 * 1024  # RCC_MAX_UPLOAD_BYTES
    max_upload_pixels: int = 40_000_000  # RCC_MAX_UPLOAD_PIXELS: refused before decoding
    upload_ttl_s: int = 24 * 3600  # RCC_UPLOAD_TTL_S: then the file is deleted
    uploads_per_min: int = 30  # RCC_RATE_UPLOADS_PER_MIN, per user
    object_info_ttl_s: float = 300.0  # RCC_OBJECT_INFO_TTL_S: a backend's cached description
    # COMFYUI_URLS, read here too: the portal checks workflows against these backends.
    backends: tuple[str, ...] = ()


def _number(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be above 0")
    return value


def load_template_settings(env: dict[str, str]) -> TemplateSettings:
    """The template and upload variables (see .env.example)."""
    raw = env.get("RCC_RAW_WORKFLOWS", "").strip().lower() or "all"
    if raw not in ("all", "admins"):
        raise SystemExit(f"RCC_RAW_WORKFLOWS must be all or admins, got {raw!r}")
    default = TemplateSettings()
    return TemplateSettings(
        raw_workflows="admins" if raw == "admins" else "all",
        max_upload_bytes=_number(env, "RCC_MAX_UPLOAD_BYTES", default.max_upload_bytes),
        max_upload_pixels=_number(env, "RCC_MAX_UPLOAD_PIXELS", default.max_upload_pixels),
        upload_ttl_s=_number(env, "RCC_UPLOAD_TTL_S", default.upload_ttl_s),
        uploads_per_min=_number(env, "RCC_RATE_UPLOADS_PER_MIN", default.uploads_per_min),
        object_info_ttl_s=_number(env, "RCC_OBJECT_INFO_TTL_S", 300),
        backends=tuple(
            u.strip().rstrip("/") for u in env.get("COMFYUI_URLS", "").split(",") if u.strip()
        ),
    )
