"""GET /healthz (liveness), GET /readyz (database, migrations, followers of the log) and
GET /metrics (Prometheus)."""

from __future__ import annotations

import asyncpg
from litestar import MediaType, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from portal.identity import admin_or_service_reader
from portal.ledger_metrics import ledger_metrics
from portal.responses import SIGNED_IN, errors
from rcc.follower.status import status as follower_status
from rcc.store.migrations import pending

READY_LAG_S = 30.0
NOT_READY = {
    503: ResponseSpec(
        data_container=dict[str, object],
        description="Not ready: migrating, database unavailable, projections lagging or a "
        "follower of the log blocked on an event type its version does not know",
        generate_examples=False,
    )
}


@get("/healthz", sync_to_thread=False, tags=["ops"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz", tags=["ops"], responses=NOT_READY)
async def readyz(state: State) -> Response[dict[str, object]]:
    """Ready when the database answers, every migration is applied, the projections
    are less than 30 s behind the log and no follower (projection or adapter) stands
    blocked before an event type its version does not know (it needs an upgrade)."""
    pool: asyncpg.Pool = state.pool
    try:
        async with pool.acquire() as conn:
            missing = await pending(conn)
            if missing:
                return Response(
                    {"status": "migrating", "pending_migrations": missing}, status_code=503
                )
            followers = await follower_status(conn)
    except (OSError, asyncpg.PostgresError) as error:
        return Response({"status": "unavailable", "database": str(error)}, status_code=503)
    lags = [row.lag_seconds for row in followers if row.kind == "projection"]
    lag_s = max(lags, default=0.0)
    body: dict[str, object] = {"status": "ready", "projection_lag_s": round(lag_s, 3)}
    blocked = {row.name: row.blocked for row in followers if row.blocked is not None}
    if blocked:
        body.update(status="blocked", blocked=blocked)
        return Response(body, status_code=503)
    if lag_s > READY_LAG_S:
        body["status"] = "lagging"
        return Response(body, status_code=503)
    return Response(body, status_code=200)


@get(
    "/metrics",
    media_type=MediaType.TEXT,
    tags=["ops"],
    guards=[admin_or_service_reader],
    responses=errors(*SIGNED_IN),
)
async def metrics(state: State) -> Response[bytes]:
    """Prometheus text exposition: requests and latencies (middleware), jobs by status,
    credits moved and projection lag (read models). (Litestar's PrometheusController
    serves the first half but documents it as JSON; this one says what it is.)

    Admin or service bearer tokens only: per-route traffic and process figures are not
    for the public. Prometheus sends one with `authorization: {credentials_file: ...}`."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        ledger = await ledger_metrics(conn)
    body = generate_latest(REGISTRY) + ledger
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})
