"""Settings, read once from the environment (the only place secrets come from)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None
    data_dir: Path
    signup_grant_rcc: int = 0
    max_running_jobs_per_user: int = 2

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; see .env.example for every variable."""
    env = dict(os.environ if env is None else env)
    return Settings(
        database_url=env.get("DATABASE_URL") or None,
        data_dir=Path(env.get("RCC_DATA_DIR") or ".rcc").resolve(),
        signup_grant_rcc=_int(env, "RCC_SIGNUP_GRANT_RCC", 0),
        max_running_jobs_per_user=_int(env, "RCC_MAX_RUNNING_JOBS_PER_USER", 2),
    )
