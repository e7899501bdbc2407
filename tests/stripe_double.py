"""A local Stripe API double over real HTTP (aiohttp on 127.0.0.1, a free port).

It implements what RCC calls: POST /v1/checkout/sessions (form-encoded, like Stripe;
records every parameter and the Idempotency-Key header, replays a repeated key),
GET /v1/events (newest first, `created[gte]`, `starting_after`, `has_more` paging),
POST /v1/payment_intents (confirmed off-session: `succeeded`, or Stripe's 402
`card_error` for a payment method in `declined_methods`, `processing` for one in
`processing_methods` until `fail_later` turns it into what Stripe's
payment_intent.payment_failed carries; a repeated key replays),
POST /v1/billing_portal/sessions and POST /v1/customers (a repeated key replays; one
arriving while the first of its key is still in progress gets Stripe's 409
`idempotency_error`, which the SDK retries).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class StripeDouble:
    page_size: int = 2  # small, so listing follows several pages
    events: list[dict[str, Any]] = field(default_factory=list)  # newest first, like Stripe
    calls: list[Call] = field(default_factory=list)
    fail_with: tuple[int, dict[str, Any]] | None = None  # answer every session create so
    _sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    declined_methods: set[str] = field(default_factory=set)  # their payments are declined
    intents: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # by key
    processing_methods: set[str] = field(default_factory=set)  # their payments settle later
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by idempotency key
    customer_latency_s: float = 0.0  # how long creating a customer is in progress
    _creating: set[str] = field(default_factory=set)  # customer keys in progress
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_get("/v1/events", self._list_events)
        app.router.add_post("/v1/payment_intents", self._create_payment_intent)
        app.router.add_post("/v1/billing_portal/sessions", self._create_portal_session)
        app.router.add_post("/v1/customers", self._create_customer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _record(self, request: web.Request, params: dict[str, str]) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.calls.append(Call(request.method, request.path, params, headers))

    async def _create_session(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        self._record(request, params)
        if self.fail_with is not None:
            status, body = self.fail_with
            return web.json_response(body, status=status)
        key = request.headers.get("Idempotency-Key", "")
        if key in self._sessions:  # Stripe replays the first answer to a repeated key
            return web.json_response(self._sessions[key])
        number = len(self._sessions) + 1
        session_id = f"cs_test_{number:04d}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": params.get("mode"),
            "status": "open",
            "payment_status": "unpaid",
            "client_reference_id": params.get("client_reference_id"),
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")
            },
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "livemode": False,
        }
        self._sessions[key] = session
        return web.json_response(session)

    async def _list_events(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self._record(request, query)
        gte = int(query.get("created[gte]", "0"))
        limit = min(int(query.get("limit", "10")), self.page_size)
        listed = [e for e in self.events if e["created"] >= gte]
        if after := query.get("starting_after"):
            ids = [e["id"] for e in listed]
            listed = listed[ids.index(after) + 1 :]
        page = listed[:limit]
        body = {
            "object": "list",
            "url": "/v1/events",
            "has_more": len(listed) > limit,
            "data": page,
        }
        return web.json_response(body)

    async def _create_payment_intent(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        self._record(request, params)
        key = request.headers.get("Idempotency-Key", "")
        if key in self.intents:  # Stripe replays the first answer to a repeated key
            status, body = self.intents[key]
            return web.json_response(body, status=status)
        method = params.get("payment_method", "")
        declined = method in self.declined_methods
        processing = method in self.processing_methods and not declined
        intent = {
            "id": f"pi_test_{len(self.intents) + 1:04d}",
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "amount_received": 0 if declined or processing else int(params["amount"]),
            "currency": params["currency"],
            "customer": params.get("customer"),
            "payment_method": method,
            "confirmation_method": "automatic",
            "status": "requires_payment_method"
            if declined
            else ("processing" if processing else "succeeded"),
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")
            },
            "livemode": False,
        }
        if declined:
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "payment_intent": intent,
            }
            self.intents[key] = (402, {"error": error})
        else:
            self.intents[key] = (200, intent)
        status, body = self.intents[key]
        return web.json_response(body, status=status)

    async def _create_portal_session(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        self._record(request, params)
        number = len([c for c in self.calls if c.path == request.path])
        return web.json_response(
            {
                "id": f"bps_test_{number:04d}",
                "object": "billing_portal.session",
                "customer": params["customer"],
                "return_url": params.get("return_url"),
                "url": f"https://billing.stripe.com/p/session/test_{number:04d}",
                "livemode": False,
            }
        )

    async def _create_customer(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        self._record(request, params)
        key = request.headers.get("Idempotency-Key", "")
        if key in self.customers:  # Stripe replays the first answer to a repeated key
            return web.json_response(self.customers[key])
        if key in self._creating:
            message = (
                "There is currently another in-progress request using this Idempotent Key "
                "(that probably means you submitted twice, and the other request is still "
                "going through). Please try again later."
            )
            body = {"error": {"type": "idempotency_error", "message": message}}
            return web.json_response(body, status=409)
        self._creating.add(key)
        await asyncio.sleep(self.customer_latency_s)
        customer = {
            "id": f"cus_test_{len(self.customers) + 1:04d}",
            "object": "customer",
            "name": params.get("name"),
            "email": params.get("email"),
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")
            },
            "invoice_settings": {"default_payment_method": None},
            "livemode": False,
        }
        self.customers[key] = customer
        self._creating.discard(key)
        return web.json_response(customer)

    def customer_creations(self) -> list[Call]:
        """The customer creations received (repeats of a key included)."""
        return [c for c in self.calls if c.path == "/v1/customers"]

    def fail_later(self, key: str, code: str = "authentication_required") -> dict[str, Any]:
        """The PaymentIntent of `key` failing after it was created (a bank asking for the
        customer, a debit bounced): the object payment_intent.payment_failed carries."""
        status, body = self.intents[key]
        intent = body["error"]["payment_intent"] if status == 402 else body
        error = {
            "type": "card_error",
            "code": code,
            "decline_code": code,
            "message": "The payment could not be completed.",
            "payment_method": {"id": intent["payment_method"], "object": "payment_method"},
        }
        failed = {
            **intent,
            "status": "requires_payment_method",
            "amount_received": 0,
            "last_payment_error": error,
        }
        self.intents[key] = (status, failed)
        return failed

    def payment_intents(self) -> list[Call]:
        """The PaymentIntent creations received (repeats of a key included)."""
        return [c for c in self.calls if c.path == "/v1/payment_intents"]
