"""The ComfyUI HTTP and websocket client (aiohttp), one per backend.

Errors are sorted by what they tell the caller about a submission: `Unreachable`
means the request never reached ComfyUI (connection refused: safe to try again),
`BackendError` means it may have (a timeout, a dropped connection, a 5xx), so the
caller must ask /queue and /history before submitting again.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from comfy_adapter.protocol import (
    FileRef,
    HistoryEntry,
    PromptAccepted,
    PromptRefused,
    QueueState,
    parse_accepted,
    parse_history,
    parse_queue,
    parse_refusal,
)


class BackendError(Exception):
    """ComfyUI did not answer as expected; a request may or may not have taken effect."""


class Unreachable(BackendError):
    """The connection was refused or could not be made: the request never arrived."""


class OutputMissing(Exception):
    """GET /view answered 404: the file a history entry names is not there."""


class OutputTooLarge(Exception):
    """An output file is larger than the adapter accepts."""


def _explain(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class ComfyClient:
    """ComfyUI's endpoints at one base URL, over a shared aiohttp session."""

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, *, request_timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=request_timeout)

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def _request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        try:
            async with self.session.request(
                method, self._url(path), json=json, params=params, timeout=self.timeout
            ) as response:
                return response.status, await response.read()
        except aiohttp.ClientConnectorError as error:
            raise Unreachable(_explain(error)) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise BackendError(_explain(error)) from error

    async def submit(
        self,
        prompt: dict[str, Any],
        *,
        client_id: str,
        prompt_id: str,
        extra_data: dict[str, Any] | None = None,
    ) -> PromptAccepted | PromptRefused:
        """POST /prompt with our client id and our chosen prompt id.

        200: accepted (queued); 400: ComfyUI's validation refused it (nothing queued).
        """
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
        if extra_data:
            body["extra_data"] = extra_data
        status, raw = await self._request("POST", "/prompt", json=body)
        try:
            if status == 200:
                return parse_accepted(raw)
            if status == 400:
                return parse_refusal(raw)
        except msgspec.DecodeError as error:
            raise BackendError(f"POST /prompt answered {status} with {raw[:200]!r}") from error
        raise BackendError(f"POST /prompt answered {status}: {raw[:200]!r}")

    async def upload_image(self, name: str, body: bytes, content_type: str) -> None:
        """POST /upload/image (multipart `image`, type=input, overwrite=true), as ComfyUI's
        own front end sends a file that a LoadImage node then names."""
        form = aiohttp.FormData()
        form.add_field("image", body, filename=name, content_type=content_type)
        form.add_field("type", "input")
        form.add_field("overwrite", "true")
        try:
            async with self.session.post(
                self._url("/upload/image"), data=form, timeout=self.timeout
            ) as response:
                if response.status != 200:
                    text = (await response.read())[:200]
                    raise BackendError(f"POST /upload/image answered {response.status}: {text!r}")
        except aiohttp.ClientConnectorError as error:
            raise Unreachable(_explain(error)) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise BackendError(_explain(error)) from error

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """GET /history/{id}: the finished prompt's entry, None while unknown or running."""
        status, raw = await self._request("GET", f"/history/{prompt_id}")
        if status != 200:
            raise BackendError(f"GET /history answered {status}")
        try:
            return parse_history(raw, prompt_id)
        except msgspec.DecodeError as error:
            raise BackendError(f"GET /history answered {raw[:200]!r}") from error

    async def queue(self) -> QueueState:
        """GET /queue: what is running and what is pending."""
        status, raw = await self._request("GET", "/queue")
        if status != 200:
            raise BackendError(f"GET /queue answered {status}")
        try:
            return parse_queue(raw)
        except msgspec.DecodeError as error:
            raise BackendError(f"GET /queue answered {raw[:200]!r}") from error

    async def delete(self, prompt_ids: list[str]) -> None:
        """POST /queue {"delete": [...]}: removes pending prompts (running ones stay)."""
        status, _ = await self._request("POST", "/queue", json={"delete": prompt_ids})
        if status != 200:
            raise BackendError(f"POST /queue answered {status}")

    async def interrupt(self, prompt_id: str) -> None:
        """POST /interrupt {"prompt_id"}: stops that prompt only if it is the running one."""
        status, _ = await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})
        if status != 200:
            raise BackendError(f"POST /interrupt answered {status}")

    async def system_stats(self) -> dict[str, Any]:
        status, raw = await self._request("GET", "/system_stats")
        if status != 200:
            raise BackendError(f"GET /system_stats answered {status}")
        found: dict[str, Any] = msgspec.json.decode(raw)
        return found

    async def download(self, ref: FileRef, target: Path, *, max_bytes: int) -> int:
        """GET /view into `target` (written under a temporary name, then renamed, so a
        partial download never appears). Returns the size."""
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        partial = target.with_name(f".{target.name}.part")
        size = 0
        try:
            async with self.session.get(
                self._url("/view"),
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
            ) as response:
                if response.status == 404:
                    raise OutputMissing(f"ComfyUI has no {ref.type} file {ref.filename!r}")
                if response.status != 200:
                    raise BackendError(f"GET /view answered {response.status}")
                with partial.open("wb") as sink:
                    async for chunk in response.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > max_bytes:
                            raise OutputTooLarge(f"{ref.filename} is larger than {max_bytes} B")
                        sink.write(chunk)
            os.replace(partial, target)
        except aiohttp.ClientConnectorError as error:
            raise Unreachable(_explain(error)) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise BackendError(_explain(error)) from error
        finally:
            partial.unlink(missing_ok=True)
        return size

    @asynccontextmanager
    async def websocket(
        self, client_id: str, *, heartbeat: float = 20.0
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """GET /ws?clientId=...: execution messages for prompts posted with this client id."""
        try:
            ws = await self.session.ws_connect(
                self._url("/ws"),
                params={"clientId": client_id},
                heartbeat=heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                max_msg_size=0,
            )
        except aiohttp.ClientConnectorError as error:
            raise Unreachable(_explain(error)) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise BackendError(_explain(error)) from error
        try:
            yield ws
        finally:
            await ws.close()
