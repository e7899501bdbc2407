"""The browser tests' world: a real `rcc serve` on a test database with the ComfyUI test
server, a Stripe API double and a slow model-file server around it, and Debian's
Chromium driven by Playwright (never `playwright install`: the system browser)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from rcc.store.database import create_pool
from tests import stripe_payloads as sp
from tests.comfy_server.server import ComfyServer
from tests.portal_helpers import PASSWORD
from tests.stripe_double import StripeDouble
from tests.template_helpers import CHECKPOINT as SAMPLE_CHECKPOINT

# Assertions wait as long as actions do: the whole suite shares two cores, and a page's
# polling (balance, job status) can lag behind under that load without being wrong.
expect.set_options(timeout=20_000)

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--headless=new",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
MODEL_BYTES = 3 << 20  # the test model file, sent in slow chunks so progress shows
STRIPE_STAND_IN = "<!doctype html><title>Stripe Checkout</title><h1>Checkout (stand-in)</h1>"


@dataclass
class Site:
    """One running service and everything it talks to."""

    base: str
    pool: asyncpg.Pool
    browser: Browser
    comfy: ComfyServer
    stripe: StripeDouble
    model_url: str
    log: Path

    async def context(self) -> BrowserContext:
        """A fresh browser profile (its own cookies), desktop-sized. Stripe's hosted
        Checkout is replaced by a stand-in page: nothing leaves the machine."""
        context = await self.browser.new_context(viewport=DESKTOP, base_url=self.base)
        context.set_default_timeout(20_000)
        await context.route(
            "https://checkout.stripe.com/**",
            lambda route: route.fulfill(
                status=200,
                content_type="text/html",
                body=STRIPE_STAND_IN,
            ),
        )
        return context

    async def deliver_checkout(self, user_id: str, session_id: str, pack: str, price: int) -> None:
        """Stripe's checkout.session.completed for a paid pack, signed as Stripe signs."""
        event = sp.event(
            "checkout.session.completed",
            sp.checkout_session(user_id=user_id, pack=pack, amount=price, session_id=session_id),
        )
        raw = sp.encode(event)
        async with httpx.AsyncClient(base_url=self.base) as http:
            answer = await http.post(
                "/webhooks/stripe",
                content=raw,
                headers={"stripe-signature": sp.sign(raw), "content-type": "application/json"},
            )
        assert answer.status_code == 200, answer.text


async def shoot(page: Page, name: str) -> None:
    """The page as it is now, at desktop and at phone width (full length)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        await page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=True)
    await page.set_viewport_size(DESKTOP)


async def _slow_file(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": str(MODEL_BYTES)})
    await response.prepare(request)
    chunk = b"\0" * (256 << 10)
    for _ in range(MODEL_BYTES // len(chunk)):
        await response.write(chunk)
        await asyncio.sleep(0.25)
    await response.write_eof()
    return response


@asynccontextmanager
async def model_files() -> AsyncIterator[str]:
    """An HTTP server with one model file that takes a few seconds to download."""
    app = web.Application()
    app.router.add_get("/models/{name}", _slow_file)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _wait_ready(base: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while time.monotonic() < deadline:
            assert proc.returncode is None, f"rcc serve exited: {_tail(log)}"
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"rcc serve did not become ready: {_tail(log)}")


@asynccontextmanager
async def database(server_url: str, template: str) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated template, dropped afterwards."""
    from tests.conftest import with_database

    name = f"ui_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    try:
        yield with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def running_site(
    db_url: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Site]:
    """`rcc serve` (a real subprocess) and its surroundings, then Chromium; `extra_env`
    adds to (or overrides) the service's environment."""
    async with model_files() as files, _running_site(db_url, data_dir, files, extra_env) as site:
        yield site


@asynccontextmanager
async def _running_site(
    db_url: str, data_dir: Path, files: str, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Site]:
    # h4: the sample templates' checkpoint is installed on this backend
    comfy = ComfyServer(node_seconds={"ImageInvert": 1.5}, steps=3, checkpoints=[SAMPLE_CHECKPOINT])
    stripe = StripeDouble()
    await comfy.start()
    await stripe.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env: dict[str, Any] = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RCC_", "STRIPE_"))},
        "DATABASE_URL": db_url,
        "RCC_DATA_DIR": str(data_dir),
        "RCC_SESSION_SECRET": "ui-test-session-secret",
        "RCC_PUBLIC_URL": base,
        "RCC_LOW_BALANCE_RCC": "5",
        "RCC_RATE_REGISTER_PER_MIN": "1000",
        "RCC_RATE_REGISTER_PER_HOUR": "1000",
        "RCC_RATE_LOGIN_PER_MIN": "1000",
        "STRIPE_SECRET_KEY": "sk_test_rcc_ui",
        "STRIPE_WEBHOOK_SECRET": sp.WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe.url,
        "COMFYUI_URLS": comfy.url,
        "RCC_COMFYUI_POLL_S": "1",
        # The local model server, host and port (a bare host means ports 80 and 443).
        "RCC_MODEL_HTTP_ALLOWLIST": files.removeprefix("http://"),
        "GITLAB_CLIENT_ID": "rcc-ui-test",  # shows the admin button (never clicked here)
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",  # no container engine here
        **(extra_env or {}),
    }
    log = data_dir.parent / f"serve-{port}.log"
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rcc.cli",
            "serve",
            "--port",
            str(port),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    pool = await create_pool(db_url, min_size=1, max_size=4)
    try:
        await _wait_ready(base, proc, log)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield Site(
                    base=base,
                    pool=pool,
                    browser=browser,
                    comfy=comfy,
                    stripe=stripe,
                    model_url=f"{files}/models/tiny-test-model.safetensors",
                    log=log,
                )
            finally:
                await browser.close()
    finally:
        await pool.close()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
        await stripe.close()
        await comfy.stop()
        assert code == 0, f"rcc serve exited with {code}: {_tail(log)}"


async def sign_up(page: Page, email: str) -> str:
    """Sign up through the form; the new user's id. A new user has nothing and no job,
    so the first run lands on Buy with a welcome (docs/WEBHOOKS.md); then the Run page."""
    await page.goto("/app/signup")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await page.wait_for_url("**/app/buy?welcome=1")
    await expect(page.locator("[data-welcome]")).to_be_visible()
    await page.goto("/app/run")
    me = await page.request.get("/me")
    return str((await me.json())["id"])
