"""schemathesis over the portal's own OpenAPI document (/schema/openapi.json).

A real `rcc serve` (portal, projectors, adapter) runs on a database of this module's own,
and every operation of the schema is driven twice: as a signed-up user (cookie session
plus the CSRF header) and with an admin bearer token. Every response must not be a 5xx
and must match the schema: a documented status code, a documented content type, a body
of the documented shape.

External services are there as far as the service needs them: a Stripe API double
(tests/stripe_double.py) answers checkout sessions; GitLab sign-in is configured so
/auth/gitlab redirects (the callback can only fail its state check: schemathesis has no
state of ours); the Docker Engine API points at a socket nobody listens on, so the
ComfyUI container operations answer their documented 503 `docker_unavailable`. That
503 is the one server status accepted, and only for those four operations: running a
container engine here would test podman, which tests/test_comfyui_ops.py already does.

Examples per operation come from the hypothesis profile (conftest.py): `ci` (50) keeps
the module near 20 s on two cores; `HYPOTHESIS_PROFILE=thorough` (300) digs deeper.
What earlier runs found is pinned in tests/test_schemathesis_findings.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.app import create_app
from portal.sessions import COOKIE
from rcc.config import Settings
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.tokens import create_token
from rcc.store.database import create_pool
from tests.portal_helpers import PASSWORD
from tests.serve_helpers import (
    RccProcess,
    create_database,
    drop_database,
    in_fresh_loop,
    rcc_env,
    serve,
)
from tests.stripe_double import StripeDouble

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Operations whose only server-side answer is a dependency we do not run here (see above).
CONTAINER_OPERATIONS = {
    "POST /admin/comfyui/start",
    "POST /admin/comfyui/stop",
    "POST /admin/comfyui/restart",
    "GET /admin/comfyui/status",
}


class StripeInThread:
    """The Stripe double on its own event loop, so a synchronous test can use it."""

    def __init__(self) -> None:
        self.double = StripeDouble()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.double.start(), self.loop).result(10)

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self.double.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass(frozen=True)
class Portal:
    """The running service and the two identities the operations are driven as."""

    base: str
    user_headers: dict[str, str]
    admin_headers: dict[str, str]


async def _fund_and_token(db_url: str, user_id: str) -> str:
    pool: asyncpg.Pool = await create_pool(db_url, min_size=1, max_size=2)
    try:
        done = await execute(pool, c.GrantCredits(user_id=user_id, kind="topup", amount=1000))
        assert isinstance(done, Done), done
        async with pool.acquire() as conn:
            _, secret = await create_token(conn, "admin", None, "schemathesis")
    finally:
        await pool.close()
    return secret


def _sign_up(base: str) -> dict[str, str]:
    """A new user with a cookie session: the headers a browser page would send."""
    answer = requests.post(
        f"{base}/auth/register",
        json={"email": "fuzz@example.com", "password": PASSWORD},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    cookie = answer.cookies[COOKIE]
    return {"id": body["id"], "Cookie": f"{COOKIE}={cookie}", "x-csrf-token": body["csrf_token"]}


@pytest.fixture(scope="module")
def portal(
    server_url: str, template_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Portal]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    db_url = in_fresh_loop(create_database(server_url, template_name))
    process: RccProcess | None = None
    try:
        with StripeInThread() as stripe_url:
            env = rcc_env(
                db_url,
                tmp / "data",
                STRIPE_SECRET_KEY="sk_test_schemathesis",
                STRIPE_WEBHOOK_SECRET="whsec_schemathesis",
                STRIPE_API_BASE=stripe_url,
                GITLAB_URL="http://127.0.0.1:9",
                GITLAB_CLIENT_ID="rcc-test",
                GITLAB_CLIENT_SECRET="rcc-test-secret",
                DOCKER_HOST=f"unix://{tmp}/no-engine.sock",
                # Rate limits out of the way, so the examples reach the code behind them.
                RCC_RATE_LOGIN_PER_MIN="1000000",
                RCC_RATE_REGISTER_PER_MIN="1000000",
                RCC_RATE_REGISTER_PER_HOUR="1000000",
                RCC_RATE_WEBHOOK_PER_MIN="1000000",
                RCC_RATE_MODEL_INSTALL_PER_MIN="1000000",
            )
            process = serve(env, tmp)
            process.wait_http()
            user = _sign_up(process.base)
            admin_secret = in_fresh_loop(_fund_and_token(db_url, user.pop("id")))
            yield Portal(
                base=process.base,
                user_headers=user,
                admin_headers={"Authorization": f"Bearer {admin_secret}"},
            )
    finally:
        if process is not None:
            process.stop()
        in_fresh_loop(drop_database(server_url, db_url))


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, built without a database (the app serves this very
    document at /schema/openapi.json; the last test below checks that it does)."""
    settings = Settings(database_url=None, data_dir=Path("/nonexistent"))
    document: dict[str, Any] = create_app(settings, pool=object()).openapi_schema.to_schema()
    return document


# Loaded at import, so every operation is its own test item (xdist spreads them).
schema = schemathesis.openapi.from_dict(_document())


def _call(case: Case[Any], portal: Portal, headers: dict[str, str]) -> None:
    label = f"{case.method.upper()} {case.path}"
    if case.path.startswith("/auth/"):
        # Signing in, up or out ends the caller's current session by design (no
        # fixation): these run without the shared credentials.
        headers = {}
    excluded = [not_a_server_error] if label in CONTAINER_OPERATIONS else []
    response = case.call(base_url=portal.base, headers=headers, timeout=30)
    if excluded and response.status_code >= 500:
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "docker_unavailable", response.text
    case.validate_response(response, checks=[check for check in CHECKS if check not in excluded])


@schema.parametrize()
def test_every_operation_as_a_signed_in_user(case: Case[Any], portal: Portal) -> None:
    _call(case, portal, portal.user_headers)


@schema.parametrize()
def test_every_operation_with_an_admin_token(case: Case[Any], portal: Portal) -> None:
    _call(case, portal, portal.admin_headers)


def test_the_service_serves_the_document_tested_here(portal: Portal) -> None:
    served = requests.get(f"{portal.base}/schema/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == _document()
