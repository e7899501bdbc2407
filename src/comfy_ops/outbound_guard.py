"""The model downloads' address checks (downloads.py), offered to other outbound
requests: the webhook sender and the portal's endpoint registration use this, so an
endpoint URL meets exactly the rules a model URL meets."""

from __future__ import annotations

from aiohttp.abc import AbstractResolver
from yarl import URL

from comfy_ops.downloads import CheckingResolver, DownloadPolicy, Refused, check_host, check_url
from rcc.webhooks.guard import UnsafeUrl

# Only the address rules of the policy matter here; a webhook answer is never saved.
_POLICY = DownloadPolicy(max_bytes=1 << 20)


class DownloadAddressGuard:
    """https only, to public addresses only, re-checked on connecting. With
    `allow_private` (RCC_WEBHOOK_ALLOW_PRIVATE=1: development and tests) plain http and
    internal addresses are allowed."""

    def __init__(self, *, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    def check(self, url: str) -> None:
        """Raise UnsafeUrl unless the URL's form is acceptable."""
        if self.allow_private:
            try:
                parsed = URL(url)
            except (ValueError, TypeError) as error:
                raise UnsafeUrl(f"not a URL: {error}") from None
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise UnsafeUrl("the URL needs http(s) and a host")
            return
        try:
            check_url(url, _POLICY)
        except Refused as refused:
            raise UnsafeUrl(str(refused)) from None

    async def check_host(self, url: str) -> None:
        """Raise UnsafeUrl if the host resolves to an internal address now."""
        if self.allow_private:
            return
        try:
            await check_host(URL(url), _POLICY)
        except Refused as refused:
            raise UnsafeUrl(str(refused)) from None

    def resolver(self) -> AbstractResolver | None:
        """The downloads' checking resolver: the addresses checked are those connected to."""
        return None if self.allow_private else CheckingResolver(_POLICY)
