"""Ledger figures for /metrics, read from the read models at scrape time.

Request counts and latencies come from Litestar's Prometheus middleware; these gauges
add what the ledger knows: jobs by status, credits moved, and each projection's lag.
All are small indexed reads (one row per wallet is summed; at millions of wallets the
totals would move to a counter row)."""

from __future__ import annotations

import asyncpg
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from rcc.follower.status import status as follower_status


async def ledger_metrics(conn: asyncpg.Connection) -> bytes:
    """The ledger's gauges in the Prometheus text format."""
    registry = CollectorRegistry()
    jobs = Gauge("rcc_jobs", "Jobs by status (read model)", ["status"], registry=registry)
    for row in await conn.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status"):
        jobs.labels(row["status"]).set(row["n"])
    moved = Gauge(
        "rcc_credits", "Credits moved, lifetime totals (RCC)", ["kind"], registry=registry
    )
    totals = await conn.fetchrow(
        """SELECT coalesce(sum(balance), 0) AS balance,
                  coalesce(sum(lifetime_granted), 0) AS granted,
                  coalesce(sum(lifetime_consumed), 0) AS consumed,
                  coalesce(sum(lifetime_clawed_back), 0) AS clawed_back
             FROM wallet_balances"""
    )
    for kind in ("balance", "granted", "consumed", "clawed_back"):
        moved.labels(kind).set(totals[kind])
    lag_events = Gauge(
        "rcc_projection_lag_events",
        "Committed events not yet projected",
        ["projection"],
        registry=registry,
    )
    lag_seconds = Gauge(
        "rcc_projection_lag_seconds",
        "Age of the oldest unprojected event",
        ["projection"],
        registry=registry,
    )
    for row in await follower_status(conn, "projection"):
        lag_events.labels(row.name).set(row.lag_events)
        lag_seconds.labels(row.name).set(row.lag_seconds)
    return generate_latest(registry)
