"""Settings, read once from the environment (the only place secrets come from)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Literal

import msgspec

from rcc.audit_settings import AuditSettings, load_audit_settings
from rcc.domain.catalog import DEFAULT_CATALOG, Catalog, CatalogError, parse_catalog
from rcc.domain.lots import LotPolicy
from rcc.domain.workflow import DEFAULT_MAX_WORKFLOW_BYTES
from rcc.ops_settings import (
    ComfyuiContainerSettings,
    ModelStoreSettings,
    load_comfyui_container,
    load_model_store,
)
from rcc.template_settings import TemplateSettings, load_template_settings


class RateLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Hits allowed per client ip per window (PRD NFR-S4)."""

    login_per_min: int = 10
    register_per_min: int = 5
    register_per_hour: int = 20  # tells taken addresses apart: kept scarce (SECURITY.md)
    webhook_per_min: int = 600
    model_install_per_min: int = 10


Pooler = Literal["session", "transaction"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None
    data_dir: Path
    # LISTEN, session advisory locks and migrations need one server session for their
    # whole life, which a transaction-mode pooler does not give (docs/OPERATIONS.md).
    database_direct_url: str | None = None  # DATABASE_DIRECT_URL, default DATABASE_URL
    database_pooler: Pooler = "session"  # RCC_DATABASE_POOLER: what DATABASE_URL reaches
    signup_grant_rcc: int = 0
    max_running_jobs_per_user: int = 2  # applied at dispatch (rcc/queue_limits.py)
    max_queued_jobs_per_user: int = 20  # applied at creation (rcc/queue_limits.py)
    public_url: str = "http://127.0.0.1:8000"
    session_secret: str = ""
    admin_allowlist: tuple[str, ...] = ()
    gitlab_url: str = "https://gitlab.com"
    gitlab_client_id: str = ""
    gitlab_client_secret: str = ""
    rate_limits: RateLimits = RateLimits()
    max_body_bytes: int = 1_000_000
    max_workflow_bytes: int = DEFAULT_MAX_WORKFLOW_BYTES  # stored per job, as canonical JSON
    max_header_bytes: int = 32 * 1024  # request line + headers; more is a 431
    header_timeout_s: int = 10  # to send a request's headers; slower is a 408 and a close
    trusted_proxies: tuple[str, ...] = ()  # addresses/networks whose X-Forwarded-For counts
    read_wait_s: float = 2.0  # how long a read waits for projections to catch up
    low_balance_rcc: int = 5  # pages offer to buy credits below this balance
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = "https://api.stripe.com"
    catalog: Catalog = DEFAULT_CATALOG  # RCC_CATALOG_FILE, or the built-in packs and plans
    comfyui: ComfyuiContainerSettings = ComfyuiContainerSettings()  # see rcc.ops_settings
    models: ModelStoreSettings = ModelStoreSettings()
    audit: AuditSettings = AuditSettings()  # anchors: see rcc.audit_settings
    lots: LotPolicy = LotPolicy()  # how long granted credits last: see rcc.domain.lots
    # RCC_READER_PASSWORD: `rcc migrate` lets the rcc_reader role log in with it
    # (docs/READ_API.md); empty leaves the role as it is (NOLOGIN when created).
    reader_password: str = ""
    # Outbound webhooks (docs/WEBHOOKS.md, h7): internal addresses only for development.
    webhook_allow_private: bool = False  # RCC_WEBHOOK_ALLOW_PRIVATE=1
    webhook_retry_schedule_s: tuple[float, ...] = ()  # RCC_WEBHOOK_RETRY_SCHEDULE_S; () = default
    webhook_timeout_s: int = 10  # RCC_WEBHOOK_TIMEOUT_S: one attempt, redirects included
    templates: TemplateSettings = TemplateSettings()  # uploads, raw workflows (h4)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"Settings(data_dir={self.data_dir!s}, public_url={self.public_url})"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


def _days(env: dict[str, str], name: str, default: int | None) -> int | None:
    """A lifetime in whole days; `never` for none."""
    raw = env.get(name, "").strip().lower()
    if raw == "never":
        return None
    days = _int(env, name, default or 0) if raw or default is not None else None
    if days is not None and days <= 0:
        raise SystemExit(f"{name} must be a positive number of days or 'never', got {raw!r}")
    return days


def _retry_schedule(env: dict[str, str]) -> tuple[float, ...]:
    """RCC_WEBHOOK_RETRY_SCHEDULE_S: comma-separated seconds before each retry (empty:
    the sender's default, about a day of exponential backoff)."""
    raw = env.get("RCC_WEBHOOK_RETRY_SCHEDULE_S", "").strip()
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"RCC_WEBHOOK_RETRY_SCHEDULE_S must be seconds, got {raw!r}") from None
    if any(d < 0 for d in delays):
        raise SystemExit("RCC_WEBHOOK_RETRY_SCHEDULE_S must not be negative")
    return delays


def _lot_policy(env: dict[str, str]) -> LotPolicy:
    default = LotPolicy()
    return LotPolicy(
        signup_days=_days(env, "RCC_SIGNUP_CREDITS_DAYS", default.signup_days),
        topup_days=_days(env, "RCC_TOPUP_CREDITS_DAYS", default.topup_days),
        subscription_days=_days(env, "RCC_SUBSCRIPTION_CREDITS_DAYS", default.subscription_days),
        subscription_rollover_rcc=_rollover(env),
    )


def _rollover(env: dict[str, str]) -> int:
    """RCC_SUBSCRIPTION_ROLLOVER_RCC: how much of a month may roll into the next (0)."""
    cap = _int(env, "RCC_SUBSCRIPTION_ROLLOVER_RCC", 0)
    if cap < 0:
        raise SystemExit(f"RCC_SUBSCRIPTION_ROLLOVER_RCC must not be negative, got {cap}")
    return cap


def _trusted_proxies(env: dict[str, str]) -> tuple[str, ...]:
    """RCC_TRUSTED_PROXIES: comma-separated addresses or CIDR networks (default none)."""
    entries = [e.strip() for e in env.get("RCC_TRUSTED_PROXIES", "").split(",") if e.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SystemExit(
                f"RCC_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
            ) from None
    return tuple(entries)


def _pooler(env: dict[str, str]) -> Pooler:
    """RCC_DATABASE_POOLER: `transaction` when DATABASE_URL is a transaction-mode pooler
    (PgBouncer, Supabase's, Neon's), which then also needs DATABASE_DIRECT_URL."""
    raw = env.get("RCC_DATABASE_POOLER", "").strip().lower() or "session"
    if raw not in ("session", "transaction"):
        raise SystemExit(f"RCC_DATABASE_POOLER must be session or transaction, got {raw!r}")
    if raw == "transaction" and not (env.get("DATABASE_URL") and env.get("DATABASE_DIRECT_URL")):
        raise SystemExit(
            "RCC_DATABASE_POOLER=transaction needs DATABASE_URL (the pooler) and "
            "DATABASE_DIRECT_URL (the server itself, for migrations, LISTEN and locks)"
        )
    return "transaction" if raw == "transaction" else "session"


def _session_secret(env: dict[str, str], data_dir: Path) -> str:
    """RCC_SESSION_SECRET, or one generated once and kept in the data directory, so
    sessions survive restarts of a single-machine install without any setup."""
    if secret := env.get("RCC_SESSION_SECRET", "").strip():
        return secret
    path = data_dir / "session_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def _catalog(env: dict[str, str]) -> Catalog:
    """RCC_CATALOG_FILE (.json or .toml), or the built-in catalog when unset."""
    name = env.get("RCC_CATALOG_FILE", "").strip()
    if not name:
        return DEFAULT_CATALOG
    path = Path(name)
    try:
        return parse_catalog(path.read_bytes(), toml=path.suffix == ".toml")
    except (OSError, CatalogError) as error:
        raise SystemExit(f"RCC_CATALOG_FILE {name}: {error}") from None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; see .env.example for every variable."""
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("RCC_DATA_DIR") or ".rcc").resolve()
    allow = tuple(
        item.strip().lower()
        for item in env.get("RCC_ADMIN_ALLOWLIST", "").split(",")
        if item.strip()
    )
    return Settings(
        database_url=env.get("DATABASE_URL") or None,
        data_dir=data_dir,
        database_direct_url=env.get("DATABASE_DIRECT_URL") or env.get("DATABASE_URL") or None,
        database_pooler=_pooler(env),
        signup_grant_rcc=_int(env, "RCC_SIGNUP_GRANT_RCC", 0),
        max_running_jobs_per_user=_int(env, "RCC_MAX_RUNNING_JOBS_PER_USER", 2),
        max_queued_jobs_per_user=_int(env, "RCC_MAX_QUEUED_JOBS_PER_USER", 20),
        public_url=(env.get("RCC_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
        session_secret=_session_secret(env, data_dir),
        admin_allowlist=allow,
        gitlab_url=(env.get("GITLAB_URL") or "https://gitlab.com").rstrip("/"),
        gitlab_client_id=env.get("GITLAB_CLIENT_ID", ""),
        gitlab_client_secret=env.get("GITLAB_CLIENT_SECRET", ""),
        rate_limits=RateLimits(
            login_per_min=_int(env, "RCC_RATE_LOGIN_PER_MIN", 10),
            register_per_min=_int(env, "RCC_RATE_REGISTER_PER_MIN", 5),
            register_per_hour=_int(env, "RCC_RATE_REGISTER_PER_HOUR", 20),
            webhook_per_min=_int(env, "RCC_RATE_WEBHOOK_PER_MIN", 600),
            model_install_per_min=_int(env, "RCC_RATE_MODEL_INSTALL_PER_MIN", 10),
        ),
        max_body_bytes=_int(env, "RCC_MAX_BODY_BYTES", 1_000_000),
        max_workflow_bytes=_int(env, "RCC_MAX_WORKFLOW_BYTES", DEFAULT_MAX_WORKFLOW_BYTES),
        max_header_bytes=_int(env, "RCC_MAX_HEADER_BYTES", 32 * 1024),
        header_timeout_s=_int(env, "RCC_HEADER_TIMEOUT_S", 10),
        trusted_proxies=_trusted_proxies(env),
        low_balance_rcc=_int(env, "RCC_LOW_BALANCE_RCC", 5),
        stripe_secret_key=env.get("STRIPE_SECRET_KEY", "").strip(),
        stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", "").strip(),
        stripe_api_base=(env.get("STRIPE_API_BASE") or "https://api.stripe.com").rstrip("/"),
        catalog=_catalog(env),
        comfyui=load_comfyui_container(env),
        models=load_model_store(env),
        audit=load_audit_settings(env),
        templates=load_template_settings(env),
        lots=_lot_policy(env),
        reader_password=env.get("RCC_READER_PASSWORD", ""),
        webhook_allow_private=env.get("RCC_WEBHOOK_ALLOW_PRIVATE", "").strip() == "1",
        webhook_retry_schedule_s=_retry_schedule(env),
        webhook_timeout_s=_int(env, "RCC_WEBHOOK_TIMEOUT_S", 10),
    )
