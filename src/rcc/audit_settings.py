"""Settings of the audit: the anchor key and where and how often the service anchors."""

from __future__ import annotations

from pathlib import Path

import msgspec


class AuditSettings(msgspec.Struct, frozen=True, kw_only=True):
    key_hex: str = ""  # RCC_AUDIT_KEY: signs anchors (a secret; never logged)
    public_key_hex: str = ""  # RCC_AUDIT_PUBLIC_KEY: checks anchors without the secret
    anchor_dir: Path | None = None  # RCC_AUDIT_ANCHOR_DIR
    anchor_every_s: float = 3600.0  # RCC_AUDIT_ANCHOR_EVERY_S

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"AuditSettings(anchor_dir={self.anchor_dir}, every={self.anchor_every_s}s)"


def load_audit_settings(env: dict[str, str]) -> AuditSettings:
    """The RCC_AUDIT_* variables (see .env.example)."""
    every = env.get("RCC_AUDIT_ANCHOR_EVERY_S", "").strip() or "3600"
    try:
        seconds = float(every)
    except ValueError:
        raise SystemExit(f"RCC_AUDIT_ANCHOR_EVERY_S must be a number, got {every!r}") from None
    if seconds <= 0:
        raise SystemExit("RCC_AUDIT_ANCHOR_EVERY_S must be above 0")
    directory = env.get("RCC_AUDIT_ANCHOR_DIR", "").strip()
    return AuditSettings(
        key_hex=env.get("RCC_AUDIT_KEY", "").strip(),
        public_key_hex=env.get("RCC_AUDIT_PUBLIC_KEY", "").strip(),
        anchor_dir=Path(directory).resolve() if directory else None,
        anchor_every_s=seconds,
    )
