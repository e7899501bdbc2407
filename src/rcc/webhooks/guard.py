"""What the sender asks of an address check: the port the composition root fills with
the model downloads' checks (comfy_ops.outbound_guard), so there is one of them."""

from __future__ import annotations

from typing import Protocol

from aiohttp.abc import AbstractResolver


class UnsafeUrl(Exception):
    """An endpoint URL (or a redirect) that points where we do not send."""


class AddressGuard(Protocol):
    def check(self, url: str) -> None:
        """Raise UnsafeUrl unless the URL's form (scheme, credentials, literal IP) is
        acceptable."""

    async def check_host(self, url: str) -> None:
        """Raise UnsafeUrl if the host resolves to an internal address now."""

    def resolver(self) -> AbstractResolver | None:
        """A resolver that refuses internal addresses on connecting (None: any)."""
