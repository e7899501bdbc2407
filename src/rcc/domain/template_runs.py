"""What a job built from a template carries into its admission: which template and
version it ran, and the price its rule gave for the inputs (held at creation)."""

from __future__ import annotations

import msgspec


class TemplateRun(msgspec.Struct, frozen=True, kw_only=True):
    template_id: str
    version: int
    price_rcc: int  # the rule's estimate for these inputs: what the job holds
    values: dict[str, object] = {}  # the inputs as bound: what a metered capture reprices
    price_rule: dict[str, object] = {}  # the version's rule, so success reprices without it
    required_tags: tuple[str, ...] = ()  # backend tags the version requires (issue 16's)
