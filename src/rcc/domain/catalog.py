"""What can be bought: top-up packs and plans, priced in integer minor units.

The catalog comes from configuration (`RCC_CATALOG_FILE`, JSON or TOML) or is the
built-in default below. Stripe price ids tie each price to the Stripe dashboard; the
webhook checks every payment's amount and currency against the catalog.
"""

from __future__ import annotations

import re
import tomllib
from typing import Literal

import msgspec

Interval = Literal["month", "year"]
MONTHS: dict[str, int] = {"month": 1, "year": 12}
_CURRENCY = re.compile(r"^[a-z]{3}$")


class Pack(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: str
    credits: int
    price: int  # minor units (cents)
    currency: str
    stripe_price_id: str


class PlanPrice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    price: int  # minor units, for the whole interval
    stripe_price_id: str


class Plan(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: str
    credits_per_month: int
    currency: str
    monthly: PlanPrice
    annual: PlanPrice  # paid once a year, credited month by month

    def price_for(self, interval: str) -> PlanPrice | None:
        return {"month": self.monthly, "year": self.annual}.get(interval)


class Catalog(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    packs: list[Pack]
    plans: list[Plan]

    def pack(self, pack_id: str | None) -> Pack | None:
        return next((p for p in self.packs if p.id == pack_id), None)

    def plan(self, plan_id: str | None) -> Plan | None:
        return next((p for p in self.plans if p.id == plan_id), None)

    def plan_by_price(self, stripe_price_id: str | None) -> tuple[Plan, Interval] | None:
        """The plan and interval a Stripe price id stands for."""
        for plan in self.plans:
            if stripe_price_id == plan.monthly.stripe_price_id:
                return plan, "month"
            if stripe_price_id == plan.annual.stripe_price_id:
                return plan, "year"
        return None


DEFAULT_CATALOG = Catalog(
    packs=[
        Pack(id="S", name="Small", credits=100, price=500, currency="usd",
             stripe_price_id="price_rcc_pack_s"),
        Pack(id="M", name="Medium", credits=550, price=2500, currency="usd",
             stripe_price_id="price_rcc_pack_m"),
        Pack(id="L", name="Large", credits=1200, price=5000, currency="usd",
             stripe_price_id="price_rcc_pack_l"),
    ],
    plans=[
        Plan(
            id="starter", name="Starter", credits_per_month=300, currency="usd",
            monthly=PlanPrice(price=1200, stripe_price_id="price_rcc_starter_month"),
            annual=PlanPrice(price=12000, stripe_price_id="price_rcc_starter_year"),
        ),
        Plan(
            id="pro", name="Pro", credits_per_month=1500, currency="usd",
            monthly=PlanPrice(price=4900, stripe_price_id="price_rcc_pro_month"),
            annual=PlanPrice(price=49000, stripe_price_id="price_rcc_pro_year"),
        ),
    ],
)  # fmt: skip


class CatalogError(ValueError):
    """The catalog file cannot be read or breaks a rule."""


def problems(catalog: Catalog) -> list[str]:
    """Every rule the catalog breaks (empty: fine)."""
    found: list[str] = []
    for kind, ids in (
        ("pack", [p.id for p in catalog.packs]),
        ("plan", [p.id for p in catalog.plans]),
    ):
        if len(set(ids)) != len(ids):
            found.append(f"{kind} ids must be unique: {ids}")
    price_ids: list[str] = [p.stripe_price_id for p in catalog.packs]
    for pack in catalog.packs:
        if pack.credits <= 0 or pack.price <= 0:
            found.append(f"pack {pack.id}: credits and price must be positive")
        if not _CURRENCY.match(pack.currency):
            found.append(f"pack {pack.id}: currency must be a lowercase ISO code like 'usd'")
    for plan in catalog.plans:
        price_ids += [plan.monthly.stripe_price_id, plan.annual.stripe_price_id]
        if plan.credits_per_month <= 0 or plan.monthly.price <= 0 or plan.annual.price <= 0:
            found.append(f"plan {plan.id}: credits and prices must be positive")
        if not _CURRENCY.match(plan.currency):
            found.append(f"plan {plan.id}: currency must be a lowercase ISO code like 'usd'")
    if len(set(price_ids)) != len(price_ids) or not all(price_ids):
        found.append("every Stripe price id must be set and used once")
    return found


def parse_catalog(raw: bytes, *, toml: bool = False) -> Catalog:
    """A catalog from the bytes of a JSON (or TOML) file, checked against the rules."""
    try:
        data = tomllib.loads(raw.decode()) if toml else msgspec.json.decode(raw)
        catalog = msgspec.convert(data, Catalog)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, msgspec.DecodeError) as error:
        raise CatalogError(str(error)) from None
    except msgspec.ValidationError as error:
        raise CatalogError(str(error)) from None
    if found := problems(catalog):
        raise CatalogError("; ".join(found))
    return catalog
