"""The app factory: `create_app(settings)` wires the pool and the routes into Litestar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.plugins.prometheus import PrometheusConfig

from portal import pages
from portal.api_docs import openapi_config, swagger_assets
from portal.backend_descriptions import BackendDescriptions
from portal.errors import (
    DATABASE_GONE,
    handle_bad_cursor,
    handle_bad_value,
    handle_database_gone,
    handle_http,
    handle_outcome_unknown,
    handle_unexpected,
)
from portal.forwarded import parse_networks, trusted_proxies_middleware
from portal.identity import read_only_roles_write_nothing
from portal.json_bodies import json_bodies_only
from portal.observability import request_id_middleware
from portal.routes import (
    account,
    admin,
    admin_orgs,
    audit,
    auth,
    auto_topup,  # h7
    credits_api,
    gitlab,
    health,
    jobs,
    operations,
    org_auto_topup,  # h14
    org_billing,  # h14
    orgs,
    payments,
    templates,  # h4
    uploads,  # h4
    webhooks,  # h7
)
from portal.routes import pool as gpu_pool  # GET /admin/adapters (h3)
from portal.routes.backends import router as backends_router  # the GPU pool (h8)
from portal.routes.policies import plans_router, policies_router  # h6
from projections.paging import BadCursor
from rcc.bootstrap import open_pool
from rcc.config import Settings
from rcc.service.sample_templates import publish_samples
from rcc.store.outcome import OutcomeUnknown


def create_app(settings: Settings, pool: asyncpg.Pool | None = None) -> Litestar:
    """The portal. It opens (and closes) its own pool unless one is given."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = pool is None
        app.state.pool = pool if pool is not None else await open_pool(settings)
        if own:  # the service's own portal: a fresh install shows the sample templates
            await publish_samples(app.state.pool)
        try:
            yield
        finally:
            if own:
                await app.state.pool.close()

    prometheus = PrometheusConfig(app_name="rcc", prefix="rcc", group_path=True)
    return Litestar(
        route_handlers=[
            health.healthz,
            health.readyz,
            auth.register,
            auth.login,
            auth.logout,
            gitlab.authorize,
            gitlab.callback,
            account.router,
            jobs.router,
            jobs.logs_router,
            admin.router,
            policies_router,  # h6: /admin/policies
            plans_router,  # h6: /plans
            gpu_pool.router,  # the GPU pool: GET /admin/adapters (h3)
            operations.router,
            backends_router,  # the GPU pool (h8)
            payments.router,
            audit.router,
            credits_api.router,  # the service credits API (h1: holds, usage)
            webhooks.router,  # outbound webhooks (h7)
            auto_topup.router,  # auto top-up, customer portal (h7)
            orgs.router,  # organisations (h5)
            admin_orgs.router,  # organisations (h5)
            org_billing.router,  # an org's Stripe customer and portal (h14)
            org_auto_topup.router,  # an org's auto top-up (h14)
            templates.router,  # h4
            templates.admin_router,  # h4
            uploads.router,  # h4
            health.metrics,
            pages.router(),  # the browser pages (not in the OpenAPI schema)
            pages.static_files(),
            swagger_assets(),  # /schema's own script and stylesheet: no CDN
        ],
        lifespan=[lifespan, operations.operations_lifespan],  # the pool opens first
        state=State(
            {
                "settings": settings,
                **({"pool": pool} if pool is not None else {}),
                # h4: what the backends can run, checked before paying
                "backend_descriptions": BackendDescriptions(
                    settings.templates.backends, settings.templates.object_info_ttl_s
                ),
            }
        ),
        middleware=[
            trusted_proxies_middleware(parse_networks(settings.trusted_proxies)),  # first
            request_id_middleware,
            prometheus.middleware,
        ],
        before_request=json_bodies_only,  # JSON routes take JSON only, decoded strictly
        guards=[read_only_roles_write_nothing],  # auditor tokens never write
        exception_handlers={
            HTTPException: handle_http,
            BadCursor: handle_bad_cursor,
            asyncpg.DataError: handle_bad_value,  # what the database cannot hold: a 400
            **dict.fromkeys(DATABASE_GONE, handle_database_gone),  # an outage: a 503
            OutcomeUnknown: handle_outcome_unknown,  # a lost COMMIT reply, unresolved: a 503
            Exception: handle_unexpected,
        },
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        template_config=pages.template_config(),
        debug=False,
        logging_config=None,  # the process configures logging (JSON lines), not the app
    )
