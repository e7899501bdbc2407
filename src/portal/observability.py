"""Request ids, structured JSON logs and Prometheus metrics.

Logs never carry secrets: only the method, path, status, timing, request id and
client ip are logged per request (never headers, cookies, bodies or query strings)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("portal.access")
REQUEST_ID_HEADER = "x-request-id"
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode(errors="replace")


# Paths that carry a secret (an invitation token, h5): logged with the token hidden.
_TOKEN_IN_PATH = re.compile(r"^(/(?:app/)?invitations/)[^/]+")


def without_tokens(path: str) -> str:
    """The path as the access log may keep it: an invitation's token replaced by `***`."""
    return _TOKEN_IN_PATH.sub(r"\1***", path)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value)


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Give every request an id (kept from X-Request-ID when sane), echo it in the
    response, and write one access-log line per request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http":
            await app(scope, receive, send)
            return
        sent = (
            dict(scope.get("headers", []))
            .get(REQUEST_ID_HEADER.encode(), b"")
            .decode(errors="replace")
        )
        request_id = sent if _valid_request_id(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": without_tokens(scope.get("path") or ""),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "ip": client[0] if client else None,
                },
            )

    return middleware
