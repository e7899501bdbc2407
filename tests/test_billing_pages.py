"""Billing states in the portal: GET /me's billing_state, the banner that follows it
(an offer to buy on low_balance), and the first run landing on Buy with a welcome."""

from __future__ import annotations

import asyncpg
import httpx

from tests.portal_helpers import grant, sign_up


async def test_me_and_the_banner_follow_the_billing_state(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)  # RCC_LOW_BALANCE_RCC defaults to 5
    home = await client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/app/buy?welcome=1"
    welcome = await client.get("/app/buy", params={"welcome": "1"})
    assert "data-welcome" in welcome.text and "Welcome to RCC" in welcome.text
    assert "data-welcome" not in (await client.get("/app/buy")).text
    for added, state, shown in [
        (0, "depleted", "You have no credits left"),
        (5, "low_balance", "Your balance is low"),  # at the threshold: low
        (1, "healthy", None),
    ]:
        if added:
            await grant(pool, member.user_id, added)
        me = (await client.get("/me")).json()
        assert me["billing_state"] == state, me
        page = (await client.get("/app/credits")).text
        assert f'data-billing-state="{state}"' in page
        banner = page.split("data-low-banner", 1)[1].split("</div>", 1)[0]
        if shown is None:
            assert banner.split(">", 1)[0].rstrip().endswith("hidden")
        else:
            visible = [part for part in banner.split("<span")[1:] if "hidden>" not in part]
            assert len(visible) == 1 and shown in visible[0]
            assert 'href="/app/buy"' in banner  # the offer to buy
    # Something to spend now: no first-run welcome any more.
    assert (await client.get("/")).headers["location"] == "/app/run"
