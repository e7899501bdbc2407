"""Security findings 5 and 6 of issue 17 against a real `rcc portal` process over real
TCP: bounded request heads (size and time) and X-Forwarded-For believed only from
RCC_TRUSTED_PROXIES. (docs/SECURITY.md.)"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from portal.app import create_app
from portal.forwarded import forwarded_client, parse_networks
from rcc.config import load_settings
from tests.conftest import portal_client
from tests.serve_helpers import RccProcess, rcc_env, serve


@pytest.fixture
def portal_process(db_url: str, tmp_path: Path) -> Iterator[RccProcess]:
    """`rcc portal` on a free port, with a 2 s limit for request heads."""
    env = rcc_env(db_url, tmp_path / "data", RCC_HEADER_TIMEOUT_S="2")
    process = serve(env, tmp_path, "portal")
    try:
        process.wait_http("/healthz")
        yield process
    finally:
        process.stop()


def _connect(process: RccProcess) -> socket.socket:
    assert process.port is not None
    return socket.create_connection(("127.0.0.1", process.port), timeout=10)


def _answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Read a whole response (the server closes after it): status and JSON body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def _rss_kib(process: RccProcess) -> int:
    assert process.proc is not None
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_huge_head(process: RccProcess, megabytes: int) -> None:
    """Try to send a request head of `megabytes` MB (the server may cut it short)."""
    with _connect(process) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        try:
            for _ in range(megabytes * 16):
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped listening long before: what we want


def test_oversized_request_heads_get_431_and_cost_no_memory(
    portal_process: RccProcess,
) -> None:
    with _connect(portal_process) as sock:  # a little over the 32 KiB limit
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 40_000)
        status, body = _answer(sock)
    assert status == 431 and body["error"] == "request_header_fields_too_large"
    before = _rss_kib(portal_process)
    for _ in range(10):  # the report's attack: 10 connections of 40 MB of headers
        _send_huge_head(portal_process, 40)
    grown_mib = (_rss_kib(portal_process) - before) / 1024
    assert grown_mib < 30, f"the process grew by {grown_mib:.0f} MiB"
    # Heads of an ordinary size still pass, on the same process.
    cookie = "rcc_session=" + "c" * 16_000
    ok = httpx.get(f"{portal_process.base}/healthz", headers={"cookie": cookie})
    assert ok.status_code == 200


def test_slow_request_heads_are_cut_off(portal_process: RccProcess) -> None:
    with _connect(portal_process) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        try:
            for _ in range(20):  # one header byte every 0.25 s: a slowloris
                sock.sendall(b"X")
                time.sleep(0.25)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, body = _answer(sock)
        assert status == 408 and body["error"] == "request_timeout"
        assert time.monotonic() - started < 4.5
    with _connect(portal_process) as idle:  # a connection that never says anything
        started = time.monotonic()
        assert idle.recv(1024) == b""  # closed by the server
        assert 1.5 < time.monotonic() - started < 4.5
    # A request that sends its head in time on a kept-alive connection is unaffected.
    with httpx.Client(base_url=portal_process.base) as http:
        assert http.get("/healthz").status_code == 200
        time.sleep(1.5)
        assert http.get("/healthz").status_code == 200


async def _sign_in_ips(owner: asyncpg.Connection) -> list[str]:
    rows = await owner.fetch(
        "SELECT data->>'ip' AS ip FROM events WHERE type = 'sign_in_attempted' ORDER BY position"
    )
    return [row["ip"] for row in rows]


async def test_forwarded_for_from_loopback_is_not_believed_by_default(
    portal_process: RccProcess, owner: asyncpg.Connection
) -> None:
    """Rate limits cannot be dodged by inventing addresses, and no text lands in `ip`."""
    async with httpx.AsyncClient(base_url=portal_process.base) as http:
        answers = [
            await http.post(
                "/auth/login",
                json={"email": "ghost@example.com", "password": "x"},
                headers={"x-forwarded-for": f"203.0.113.{n}" if n % 2 else "<script>"},
            )
            for n in range(11)
        ]
    assert [a.status_code for a in answers] == [401] * 10 + [429]
    assert set(await _sign_in_ips(owner)) == {"127.0.0.1"}


async def test_trusted_proxies_are_believed_and_checked(
    pool: asyncpg.Pool, owner: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        {
            "DATABASE_URL": db_url,
            "RCC_DATA_DIR": str(tmp_path / "data"),
            "RCC_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
        }
    )
    app = create_app(settings, pool=pool)
    cases = [
        ("10.1.2.3", "198.51.100.7"),  # through our proxy: believed
        ("10.1.2.3", "198.51.100.8, 192.0.2.1"),  # two of our proxies: the hop before them
        ("10.1.2.3", "not-an-address"),  # text is never an address: the proxy's own
        ("10.1.2.3", "198.51.100.9, =cmd|x"),  # stops at the first hop that is not one
        ("203.0.113.5", "198.51.100.10"),  # not through our proxy: not believed
    ]
    for peer, forwarded in cases:
        async with portal_client(app, ip=peer) as http:
            answer = await http.post(
                "/auth/login",
                json={"email": "ghost@example.com", "password": "x"},
                headers={"x-forwarded-for": forwarded},
            )
            assert answer.status_code == 401
    assert await _sign_in_ips(owner) == [
        "198.51.100.7",
        "198.51.100.8",
        "10.1.2.3",
        "10.1.2.3",
        "203.0.113.5",
    ]


def test_trusted_proxies_setting_is_validated() -> None:
    with pytest.raises(SystemExit, match="RCC_TRUSTED_PROXIES"):
        load_settings({"RCC_SESSION_SECRET": "s", "RCC_TRUSTED_PROXIES": "proxy.lan"})
    trusted = parse_networks(["::1", "10.0.0.0/8"])
    assert forwarded_client("::1", "2001:db8::5", trusted) == "2001:db8::5"
    assert forwarded_client("127.0.0.1", "2001:db8::5", trusted) == "127.0.0.1"
