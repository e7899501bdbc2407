"""The recorded ComfyUI traffic, replayed: through the adapter's parser, and against the
test server (which must answer exactly as the real server did)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfy_adapter import protocol as p
from comfy_adapter.client import ComfyClient
from rcc.outputs import OutputStore, safe_name
from tests.comfy_server import ComfyServer, captures

RUNS_WITH_CLIENT = [
    "run_success",
    "run_success_cached_resubmit",
    "run_runtime_error",
    "run_ws_image_no_feature_flags",
    "run_ws_image_with_feature_flags",
    "run_partially_invalid_prompt",
    "run_upload_loadimage",
    "run_client_chosen_prompt_id",
]


# --- the parser on the real recordings ----------------------------------------------------


@pytest.mark.parametrize("log", captures.ws_logs(), ids=lambda path: f"{path.parent.name}")
def test_parser_reads_every_recorded_websocket_frame(log: Path) -> None:
    for frame in captures.ws_log(str(log.relative_to(captures.CAPTURES))):
        if frame["kind"] == "binary":
            parsed = p.parse_binary(rebuild_binary(frame))
            assert parsed.event_type == frame["event_type"]
            if frame["event_type"] == p.PREVIEW_IMAGE_WITH_METADATA:
                assert parsed.prompt_id == frame["metadata"]["prompt_id"]
                assert parsed.image_type == "image/png"
            else:
                assert parsed.image_type == "image/png"
            continue
        message = frame["msg"]
        parsed_message = p.parse_message(json.dumps(message))
        assert not isinstance(parsed_message, p.Unknown), message["type"]
        assert p.message_prompt_id(parsed_message) == message["data"].get("prompt_id")
        match parsed_message:
            case p.Executing(node=None):
                assert message["data"]["node"] is None
            case p.Executed():
                files = p.output_files({parsed_message.node: parsed_message.output})
                assert [f.filename for _, f in files] == [
                    i["filename"] for i in message["data"]["output"]["images"]
                ]
            case p.ExecutionError():
                assert parsed_message.exception_type == "IndexError"
                assert parsed_message.traceback
            case p.Status():
                assert parsed_message.status.exec_info.queue_remaining >= 0


def rebuild_binary(frame: dict[str, Any]) -> bytes:
    """The frame from its recorded header (the image bytes were not stored)."""
    image = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    if frame["event_type"] == p.PREVIEW_IMAGE_WITH_METADATA:
        meta = json.dumps(frame["metadata"]).encode()
        return struct.pack(">II", 4, len(meta)) + meta + image
    return bytes.fromhex(frame["header_hex"]) + image


def test_parser_reads_recorded_http_bodies() -> None:
    for path in sorted(captures.CAPTURES.glob("run_*/history*.json")):
        record = captures.record(str(path.relative_to(captures.CAPTURES)))
        prompt_id = record["request"]["path"].rsplit("/", 1)[1]
        entry = p.parse_history(json.dumps(record["body"]).encode(), prompt_id)
        if not record["body"]:  # deleted before it ran: {}
            assert entry is None
            continue
        assert entry is not None and entry.status.status_str in ("success", "error")
        if entry.status.status_str == "success":
            assert entry.message("execution_success") is not None
    runtime = captures.body("run_runtime_error/history.json")
    entry = p.parse_history(json.dumps(runtime).encode(), next(iter(runtime)))
    assert entry is not None
    error = entry.message("execution_error")
    assert error is not None
    assert p.execution_error_text(error) == (
        "ComfyUI failed at node 2 (ImageToMask): "
        "IndexError: index 3 is out of bounds for dimension 3 with size 3"
    )
    interrupted = captures.body("run_queue_delete_interrupt/history_A_interrupted.json")
    entry = p.parse_history(json.dumps(interrupted).encode(), next(iter(interrupted)))
    assert entry is not None and (found := entry.message("execution_interrupted")) is not None
    assert p.interrupted_text(found) == "ComfyUI interrupted the run at node 3 (PreviewImage)"
    for run in RUNS_WITH_CLIENT:
        accepted = p.parse_accepted(json.dumps(captures.body(f"{run}/post_prompt.json")).encode())
        assert accepted.prompt_id
    folder = captures.CAPTURES / "run_queue_delete_interrupt"
    steps = {s["step"]: s for s in json.loads((folder / "http_steps.json").read_text())}
    ids = json.loads((folder / "ids.json").read_text())
    queue = p.parse_queue(
        json.dumps(steps["GET /queue while A runs (B, C pending)"]["body"]).encode()
    )
    assert (queue.where(ids["A"]), queue.where(ids["C"]), queue.where("nope")) == (
        "running",
        "pending",
        None,
    )


@pytest.mark.parametrize(
    "path", sorted(captures.CAPTURES.glob("validation_errors/*.json")), ids=lambda x: x.stem
)
def test_refusal_text_names_comfyuis_own_words(path: Path) -> None:
    body = captures.body(str(path.relative_to(captures.CAPTURES)))
    text = p.refusal_text(p.parse_refusal(json.dumps(body).encode()))
    assert body["error"]["message"] in text
    for node_id, node in body["node_errors"].items():
        for error in node["errors"]:
            assert f"node {node_id} ({node['class_type']}): {error['message']}" in text


# --- the test server against the recordings -------------------------------------------------


@pytest.fixture
async def comfy() -> AsyncIterator[ComfyServer]:
    async with ComfyServer() as server:
        yield server


async def run_recorded(
    server: ComfyServer, run: str, *, flags: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Post a recorded run's request and collect what the client and an observer get."""
    sent = captures.record(f"{run}/post_prompt.json")["request"]["json_body"]
    client_id = sent.get("client_id") or "observer-only"
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{server.url}/ws", params={"clientId": client_id})
        observer = await session.ws_connect(f"{server.url}/ws", params={"clientId": "observer"})
        if flags:
            await ws.send_json(
                {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
            )
        got, seen = [], []
        answer = await session.post(f"{server.url}/prompt", json=sent)
        assert answer.status == 200
        while True:
            frame = await asyncio.wait_for(ws.receive(), timeout=10)
            if frame.type == aiohttp.WSMsgType.BINARY:
                got.append({"binary": frame.data[:4].hex()})
                continue
            message = json.loads(frame.data)
            got.append(message)
            if message["type"] == "executing" and message["data"]["node"] is None:
                break
        await asyncio.sleep(0.05)
        while True:
            try:
                frame = await asyncio.wait_for(observer.receive(), timeout=0.05)
            except TimeoutError:
                break
            if frame.type == aiohttp.WSMsgType.TEXT:
                seen.append(json.loads(frame.data))
        await ws.close()
        await observer.close()
    return got, seen


def shape(frames: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Message type and field names, in order (values differ: ids, timestamps)."""
    found: list[tuple[str, ...]] = []
    for frame in frames:
        if "binary" in frame:
            found.append(("binary", frame["binary"]))
        elif "msg" in frame:
            msg = frame["msg"]
            found.append((msg["type"], *msg["data"].keys()))
        elif frame.get("kind") == "binary":
            found.append(("binary", frame["header_hex"][:8]))
        else:
            found.append((frame["type"], *frame["data"].keys()))
    return found


@pytest.mark.parametrize(
    ("before", "run", "flags"),
    [
        (None, "run_success", False),
        ("run_success", "run_success_cached_resubmit", False),  # every node cached
        (None, "run_runtime_error", False),
        (None, "run_ws_image_no_feature_flags", False),
        # Captured right after the run above: its EmptyImage was cached.
        ("run_ws_image_no_feature_flags", "run_ws_image_with_feature_flags", True),
        (None, "run_partially_invalid_prompt", False),
        (None, "run_client_chosen_prompt_id", False),
    ],
)
async def test_test_server_sends_the_recorded_message_order(
    comfy: ComfyServer, before: str | None, run: str, flags: bool
) -> None:
    if before is not None:
        await run_recorded(comfy, before)
    got, seen = await run_recorded(comfy, run, flags=flags)
    recorded = captures.ws_log(f"{run}/ws_client.jsonl")
    assert shape(got) == shape(recorded)
    if (captures.CAPTURES / run / "ws_observer.jsonl").exists():
        observed = captures.ws_log(f"{run}/ws_observer.jsonl")
        assert shape(seen) == shape(observed)


async def test_test_server_answers_http_as_recorded(comfy: ComfyServer) -> None:
    async with aiohttp.ClientSession() as session:
        for record in captures.validation_records():
            sent = record["request"]["json_body"]
            answer = await session.post(f"{comfy.url}/prompt", json=sent)
            assert (answer.status, await answer.json()) == (record["status"], record["body"])
        for name in ("queue_idle", "history_empty_at_start", "get_prompt_idle", "system_stats"):
            record = captures.record(f"http/{name}.json")
            answer = await session.get(f"{comfy.url}{record['request']['path']}")
            assert (answer.status, await answer.json()) == (200, record["body"])
        for name in ("view_missing_file", "interrupt_global_idle", "queue_clear"):
            record = captures.record(f"http/{name}.json")
            request = record["request"]
            answer = await session.request(
                request["method"], f"{comfy.url}{request['path']}", json=request.get("json_body")
            )
            assert answer.status == record["status"]
            assert await answer.read() == b""
            assert ("Content-Type" in answer.headers) == ("Content-Type" in record["headers"])
        run = captures.record("run_success/post_prompt.json")["request"]["json_body"]
        answer = await (await session.post(f"{comfy.url}/prompt", json=run)).json()
        assert answer["number"] == len(captures.validation_records())  # refusals count too
        await asyncio.sleep(0.1)
        history = await (await session.get(f"{comfy.url}/history/{answer['prompt_id']}")).json()
        recorded = captures.body("run_success/history.json")
        mine, theirs = next(iter(history.values())), next(iter(recorded.values()))
        assert list(mine) == list(theirs)
        assert mine["outputs"] == theirs["outputs"]
        assert [m[0] for m in mine["status"]["messages"]] == [
            m[0] for m in theirs["status"]["messages"]
        ]
        view = await session.get(
            f"{comfy.url}/view",
            params={"filename": "protocol_capture_00001_.png", "subfolder": "", "type": "output"},
        )
        expected = captures.record("run_success/view_output.json")
        assert view.status == 200 and view.headers["Content-Type"] == "image/png"
        assert view.headers["Content-Disposition"] == expected["headers"]["Content-Disposition"]
        assert (await view.read())[:8].hex() == expected["body_magic_hex"]


async def test_client_contract_against_the_test_server(comfy: ComfyServer) -> None:
    """The adapter's client port: submit, refusal, queue, history, delete, interrupt."""
    async with aiohttp.ClientSession() as session:
        client = ComfyClient(comfy.url, session)
        refused = await client.submit(
            captures.record("validation_errors/bad_combo_value.json")["request"]["json_body"][
                "prompt"
            ],
            client_id="c",
            prompt_id="refused-1",
        )
        assert isinstance(refused, p.PromptRefused)
        assert "Value not in list" in p.refusal_text(refused)
        chosen = "00000000-1111-2222-3333-444444444444"
        accepted = await client.submit(
            captures.run_prompt("run_success"), client_id="c", prompt_id=chosen
        )
        assert isinstance(accepted, p.PromptAccepted) and accepted.prompt_id == chosen
        for _ in range(100):
            if (entry := await client.history(chosen)) is not None:
                break
            await asyncio.sleep(0.01)
        assert entry is not None and entry.status.status_str == "success"
        assert (await client.queue()).where(chosen) is None
        assert await client.history("unknown") is None
        await client.delete([chosen])
        await client.interrupt(chosen)
        stats = await client.system_stats()
        assert stats["system"]["comfyui_version"] == "0.3.64"


def test_output_names_are_safe_and_lookups_stay_inside(tmp_path: Path) -> None:
    assert safe_name("protocol_capture_00001_.png") == "protocol_capture_00001_.png"
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("a b?.png", "sub/dir") == "sub_dir_a_b_.png"
    assert safe_name("...") == "output"
    store = OutputStore(tmp_path / "outputs")
    taken: set[str] = set()
    first = store.new_path("job-1", "x.png", "", taken)
    second = store.new_path("job-1", "x.png", "", taken)
    assert (first.name, second.name) == ("x.png", "x-2.png")
    first.write_bytes(b"1")
    (tmp_path / "secret").write_text("no")
    assert store.find("job-1", "x.png") == first.resolve()
    for job, name in [("job-1", "../secret"), ("..", "secret"), ("job-1", ".x.png"), ("j/1", "x")]:
        assert store.find(job, name) is None
    assert store.uri("job-1", "x.png") == "/outputs/job-1/x.png"


async def test_test_server_replays_the_recorded_delete_and_interrupt() -> None:
    """run_queue_delete_interrupt: A runs, B and C wait; C is deleted, A interrupted,
    B runs. Same HTTP answers and the same messages, in the same order."""
    folder = captures.CAPTURES / "run_queue_delete_interrupt"
    steps = json.loads((folder / "http_steps.json").read_text())
    recorded = captures.ws_log("run_queue_delete_interrupt/ws_client.jsonl")
    client_id = steps[0]["request"]["json_body"]["client_id"]
    server = ComfyServer(silent_seconds={"EmptyImage": 0.2, "ImageBlur": 0.4})
    async with server, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{server.url}/ws", params={"clientId": client_id})
        got: list[dict[str, Any]] = [await ws.receive_json()]

        async def until(kind: str, node: object = ...) -> None:
            while True:
                message = await asyncio.wait_for(ws.receive_json(), timeout=10)
                got.append(message)
                if message["type"] == kind and node in (..., message["data"].get("node")):
                    return

        ids: dict[str, str] = {}
        for step in steps:
            request = step["request"]
            if step["step"] == "POST /prompt B":
                await until("executing", "1")  # as captured: B and C came while A ran
            if step["step"] == "POST /queue delete C":
                await until("executing", "2")
                request = {**request, "json_body": {"delete": [ids["C"]]}}
            if step["step"] == "POST /interrupt targeted at A":
                request = {**request, "json_body": {"prompt_id": ids["A"]}}
            if step["step"] == "GET /queue after all done":
                await until("executing", None)  # A ends
                await until("executing", None)  # then B
            answer = await session.request(
                request["method"], f"{server.url}{request['path']}", json=request.get("json_body")
            )
            assert answer.status == step["status"], step["step"]
            body = await answer.read()
            if "body" not in step:
                assert body == b"", step["step"]
                continue
            mine = json.loads(body)
            if step["step"].startswith("POST /prompt"):
                ids[step["step"].split()[2]] = mine["prompt_id"]
                assert list(mine) == list(step["body"])
            elif step["step"].startswith("GET /queue"):
                assert [[i[1] for i in mine[k]] for k in mine] == [
                    [_rename(i[1], step, ids) for i in step["body"][k]] for k in step["body"]
                ]
            else:
                assert mine == step["body"], step["step"]
        await ws.close()
    assert shape(got) == shape(recorded)
    assert ids["C"] not in server.history and ids["C"] not in server.executed
    assert server.history[ids["A"]]["status"]["messages"][-1][0] == "execution_interrupted"


def _rename(prompt_id: str, step: dict[str, Any], ids: dict[str, str]) -> str:
    recorded = json.loads(
        (captures.CAPTURES / "run_queue_delete_interrupt" / "ids.json").read_text()
    )
    names = {v: k for k, v in recorded.items() if k in "ABC"}
    return ids[names[prompt_id]]
