"""Template filters: credits, money, durations, times and the words for ledger reasons."""

from __future__ import annotations

from datetime import UTC, datetime

REASONS = {
    "JOB_RESERVE": "Job",
    "JOB_RELEASE": "Refund for a job",
    "SUBSCRIPTION_GRANT": "Plan credits",
    "TOPUP_GRANT": "Credit pack",
    "MANUAL_ADJUST": "Adjustment by support",
    "ADMIN_BYPASS": "Admin job",
    "SIGNUP_GRANT": "Welcome credits",
    "REFUND_CLAWBACK": "Payment refunded",
}
JOB_TYPES = {"IMAGE_TASK": "Image", "VIDEO_TASK": "Video"}
STATUSES = ("created", "queued", "running", "succeeded", "failed", "cancelled")
UNFINISHED = ("created", "queued", "running")
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def rcc(amount: int | None) -> str:
    """12,345 RCC"""
    return "—" if amount is None else f"{amount:,} RCC"


def signed(amount: int) -> str:
    """+100, or -1 written with a real minus sign (U+2212) so the column lines up."""
    return f"+{amount:,}" if amount > 0 else f"\u2212{-amount:,}" if amount < 0 else "0"


def money(minor: int | None, currency: str | None) -> str:
    """$5.00, or 5.00 CHF for a currency without a symbol here."""
    if minor is None:
        return "—"
    code = (currency or "").lower()
    whole = f"{minor / 100:,.2f}"
    symbol = _SYMBOLS.get(code)
    return f"{symbol}{whole}" if symbol else f"{whole} {code.upper()}".strip()


def duration(ms: int | None) -> str:
    """850 ms, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(at: datetime | None) -> str:
    """2026-05-01 14:03 UTC"""
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(UTC).isoformat()


def reason(code: str) -> str:
    return REASONS.get(code, code.replace("_", " ").capitalize())


def job_type(code: str) -> str:
    return JOB_TYPES.get(code, code)


def short_id(value: str) -> str:
    return value[:8]


def output_name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def output_kind(uri: str) -> str:
    """How the job page previews an output: image, video, or a plain download."""
    ext = uri.rsplit(".", 1)[-1].lower() if "." in uri else ""
    if ext in {"png", "jpg", "jpeg", "webp", "gif"}:
        return "image"
    if ext in {"mp4", "webm", "mov"}:
        return "video"
    return "file"


FILTERS = {
    "rcc": rcc,
    "signed": signed,
    "money": money,
    "duration": duration,
    "when": when,
    "iso": iso,
    "reason": reason,
    "job_type": job_type,
    "short_id": short_id,
    "output_name": output_name,
    "output_kind": output_kind,
}
