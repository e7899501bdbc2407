"""A ComfyUI stand-in that speaks the protocol exactly as recorded from ComfyUI 0.3.64.

Same endpoints, status codes, bodies and error shapes (taken from the capture files),
and the same websocket message order: status broadcasts, execution_start,
execution_cached, then per node progress_state -> executing -> [progress ...] ->
[executed] -> progress_state, then execution_success / execution_error /
execution_interrupted, status, and `executing` with node null once history is written.
Execution messages go only to the socket whose clientId is the prompt's client_id.

What runs is emulated, not computed. The classic cache is kept: a node whose class and
inputs (upstream included) match one of the previous prompt's is cached, listed in
execution_cached, not run; a cached output node replays its `executed`. Every node is
instantaneous except
- classes in `node_seconds`, which take that long and report progress in `steps`
  (an interrupt lands at the next step, as with ComfyUI's progress callbacks);
- classes in `silent_seconds`, which take that long without progress (like the
  recorded ImageBlur: an interrupt lands before the next node);
- ImageToMask with channel "alpha" on an image, which raises the recorded IndexError;
- output nodes (object_info says output_node), which write a small PNG; SaveVideo and
  SaveWEBM write a real small MP4/WebM (PyAV, as ComfyUI does) of the frames their
  images have (EmptyImage's batch; a Hunyuan video latent of `length` decodes to
  4 x ((length - 1) // 4) + 1 frames, as ComfyUI's does), reported as ComfyUI's
  PreviewVideo: `{"images": [file], "animated": [true]}`.
Prompts equal to a recorded validation failure get that recorded 400 answer.

Scripting for tests: `drop_sockets_at` (close every socket when a node of that class
starts), `hold_sockets_s` (keep new sockets waiting that long after a drop),
`stop()`/`start()` (down, then up on the same port), `reset()` (a restarted ComfyUI
that lost its queue and history). Counters: `posts` (POST /prompt per prompt id),
`history_gets`, `interrupts`, `deletes`, `ws_connects`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import struct
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.comfy_server import captures
from tests.video_helpers import video_bytes

FEATURES = captures.body("http/features.json")
VIDEO_NODES = {"SaveVideo": "mp4", "SaveWEBM": "webm"}  # class -> container it writes
# The inputs through which a node's images (or latents) come: a batch passes through.
FRAME_INPUTS = ("images", "image", "pixels", "samples", "latent_image", "latent", "video")


def _linked(prompt: dict[str, Any], value: Any) -> bool:
    """A link [node id, output index] to a node of this prompt."""
    return isinstance(value, list) and len(value) == 2 and value[0] in prompt


def tiny_png(seed: int = 0) -> bytes:
    """A valid 2x2 RGB PNG (a different colour per seed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    pixel = bytes([seed % 256, (seed * 7) % 256, (seed * 13) % 256])
    raw = b"".join(b"\x00" + pixel * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def same_graph(recorded: Any, sent: Any) -> bool:
    """The recorded prompt, whatever its `filename_prefix` values: the prefix names the
    output files and plays no part in ComfyUI's validation (the adapter prefixes it with
    the job id and attempt)."""

    def graph(prompt: Any) -> Any:
        if not isinstance(prompt, dict):
            return prompt
        return {
            node_id: {
                **node,
                "inputs": {
                    k: v for k, v in node.get("inputs", {}).items() if k != "filename_prefix"
                },
            }
            if isinstance(node, dict) and isinstance(node.get("inputs"), dict)
            else node
            for node_id, node in prompt.items()
        }

    return bool(graph(recorded) == graph(sent))


def now_ms() -> int:
    return int(time.time() * 1000)


def fill(kind: str, **values: Any) -> dict[str, Any]:
    """The recorded body of a message type with these fields set (and no other names)."""
    data = captures.template(kind)
    unknown = set(values) - set(data)
    assert not unknown, f"{kind} has no fields {unknown} in the capture"
    data.update(values)
    return data


@dataclass
class Item:
    """A queue entry: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""

    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]

    @property
    def client_id(self) -> str | None:
        found = self.extra_data.get("client_id")
        return found if isinstance(found, str) else None


class Interrupted(Exception):
    def __init__(self, node: str) -> None:
        self.node = node


@dataclass
class ComfyServer:
    port: int = 0
    host: str = "127.0.0.1"
    node_seconds: dict[str, float] = field(default_factory=dict)
    silent_seconds: dict[str, float] = field(default_factory=dict)
    steps: int = 10
    drop_sockets_at: str | None = None
    hold_sockets_s: float = 0.0
    # Model files this backend has: they fill the loader choices of GET /object_info.
    checkpoints: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()
        self.posts: Counter[str] = Counter()
        self.history_gets: Counter[str] = Counter()
        self.interrupts: list[str | None] = []
        self.deletes: list[str] = []
        self.ws_connects: Counter[str] = Counter()
        self.executed: list[str] = []  # prompt ids, in the order they started
        # "upload <name>" and "prompt <id>", in the order POST /upload/image and
        # accepted POST /prompt arrived (a test proves an upload came first).
        self.arrivals: list[str] = []
        self.started = asyncio.Event()  # set whenever a prompt starts running
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self._held_until = 0.0

    def reset(self) -> None:
        """Forget queue, history and files, as a restarted ComfyUI does."""
        self.number = 0
        self.pending: list[Item] = []
        self.running: Item | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.counters: Counter[str] = Counter()
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.flags: dict[str, dict[str, Any]] = {}
        self._interrupt: str | None = None
        self._wake = asyncio.Event()
        self.cache: dict[str, dict[str, Any]] = {}  # signature -> UI output (classic cache)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self.ws)
        app.router.add_get("/prompt", self.get_prompt)
        app.router.add_post("/prompt", self.post_prompt)
        app.router.add_get("/queue", self.get_queue)
        app.router.add_post("/queue", self.post_queue)
        app.router.add_post("/interrupt", self.post_interrupt)
        app.router.add_get("/history", self.get_history)
        app.router.add_get("/history/{prompt_id}", self.get_history_item)
        app.router.add_get("/view", self.view)
        app.router.add_get("/object_info", self.object_info)
        app.router.add_get("/object_info/{node}", self.object_info_node)
        app.router.add_post("/upload/image", self.upload_image)
        app.router.add_get("/system_stats", self.recorded("http/system_stats.json"))
        app.router.add_get("/features", self.recorded("http/features.json"))
        app.router.add_get("/models", self.recorded("http/models_folders.json"))
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._wake = asyncio.Event()
        self._worker = asyncio.create_task(self._work())
        self._wake.set()

    async def stop(self) -> None:
        """Go down: sockets closed, connections refused. A prompt that was running
        goes back to the front of the queue (it runs again when the server is up)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self.running is not None:
            self.pending.insert(0, self.running)
            self.running = None
        for ws in list(self.sockets.values()):
            await ws.close()
        self.sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ComfyServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def recorded(self, relative: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(captures.body(relative))

        return handler

    # --- websocket ------------------------------------------------------------------------

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        held = self._held_until - time.monotonic()
        if held > 0:
            await asyncio.sleep(held)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets[sid] = ws  # a newer socket with the same id replaces the older
        self.ws_connects[sid] += 1
        status = fill("status_connect", sid=sid)
        status["status"]["exec_info"]["queue_remaining"] = self.queue_remaining
        await ws.send_json({"type": "status", "data": status})
        first = True
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if first and data.get("type") == "feature_flags":
                    self.flags[sid] = dict(data.get("data") or {})
                    await ws.send_json({"type": "feature_flags", "data": FEATURES})
                first = False
        finally:
            # As ComfyUI does: the registration of this clientId goes unconditionally,
            # even when a newer socket with the same id is the one registered
            # (BEHAVIOUR.md, "One WebSocket per clientId").
            self.sockets.pop(sid, None)
        return ws

    async def send(self, kind: str, data: dict[str, Any], sid: str | None) -> None:
        """To one client, or to everyone when sid is None (as ComfyUI's send_sync)."""
        message = {"type": kind, "data": data}
        targets = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
        for ws in targets:
            if ws is not None and not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json(message)

    async def send_exec(self, kind: str, data: dict[str, Any], sid: str | None) -> None:
        """Execution messages reach only the prompt's client; without one, nobody."""
        if sid is not None:
            await self.send(kind, data, sid)

    async def send_preview(self, item: Item, node: str, image: bytes) -> None:
        """Binary preview frames: type 1 (legacy) or type 4 (with metadata) per client."""
        targets = (
            [(s, w) for s, w in self.sockets.items()]
            if item.client_id is None
            else [(item.client_id, self.sockets.get(item.client_id))]
        )
        for sid, ws in targets:
            if ws is None or ws.closed:
                continue
            if self.flags.get(sid, {}).get("supports_preview_metadata"):
                meta = json.dumps(
                    {
                        "node_id": node,
                        "prompt_id": item.prompt_id,
                        "display_node_id": node,
                        "parent_node_id": None,
                        "real_node_id": node,
                        "image_type": "image/png",
                    }
                ).encode()
                frame = struct.pack(">II", 4, len(meta)) + meta + image
            else:
                frame = struct.pack(">II", 1, 2) + image
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(frame)

    async def status(self) -> None:
        data = fill("status")
        data["status"]["exec_info"]["queue_remaining"] = self.queue_remaining
        await self.send("status", data, None)

    @property
    def queue_remaining(self) -> int:
        return len(self.pending) + (1 if self.running is not None else 0)

    # --- HTTP -----------------------------------------------------------------------------

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self.queue_remaining}})

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        number = self.number
        self.number += 1  # every POST without "number" takes one, refused ones too
        refused = self.validate(body)
        if refused is not None:
            return web.json_response(refused, status=400)
        prompt: dict[str, Any] = body["prompt"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        self.posts[prompt_id] += 1
        extra = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        node_errors = self.partial_errors(prompt)
        skipped = {o for e in node_errors.values() for o in e["dependent_outputs"]}
        outputs = [n for n in prompt if self.is_output(prompt[n]) and n not in skipped]
        self.pending.append(Item(number, prompt_id, prompt, extra, outputs))
        self.arrivals.append(f"prompt {prompt_id}")
        await self.status()
        self._wake.set()
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    def validate(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The recorded 400 body for a prompt ComfyUI refuses, or None."""
        if "prompt" not in body:
            return captures.body("validation_errors/no_prompt_key.json")
        prompt = body["prompt"]
        for record in captures.validation_records():
            sent = record["request"]["json_body"]
            if "prompt" in sent and same_graph(sent["prompt"], prompt):
                refused: dict[str, Any] = record["body"]
                return refused
        for node_id, node in prompt.items():
            if "class_type" not in node:
                refused = captures.body("validation_errors/missing_class_type.json")
                refused["error"]["details"] = f"Node ID '#{node_id}'"
                return refused
            if node["class_type"] not in captures.node_names():
                refused = captures.body("validation_errors/unknown_node_class.json")
                refused["error"]["message"] = (
                    f"Cannot execute because node {node['class_type']} does not exist."
                )
                refused["error"]["details"] = f"Node ID '#{node_id}'"
                return refused
        if not any(self.is_output(node) for node in prompt.values()):
            return captures.body("validation_errors/no_output_node.json")
        return self.missing_input_file(prompt)

    def input_files(self) -> list[str]:
        """LoadImage's choices: the capture's input folder plus what was uploaded."""
        uploaded = [name for (kind, _, name) in self.files if kind == "input"]
        return ["example.png", *sorted(uploaded)]

    def missing_input_file(self, prompt: dict[str, Any]) -> dict[str, Any] | None:
        """ComfyUI checks LoadImage's file at validation: the recorded 400, for this node."""
        for node_id, node in prompt.items():
            image = node.get("inputs", {}).get("image")
            if node["class_type"] == "LoadImage" and image not in self.input_files():
                refused: dict[str, Any] = captures.body(
                    "validation_errors/loadimage_missing_file.json"
                )
                [entry] = refused["node_errors"].values()
                entry["errors"][0]["message"] = f"Invalid image file: {image}"
                refused["node_errors"] = {node_id: entry}
                return refused
        return None

    def described(self) -> dict[str, Any]:
        """GET /object_info as recorded, with this backend's files in the choices."""
        info: dict[str, Any] = captures.full_object_info()
        info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = list(self.checkpoints)
        info["LoadImage"]["input"]["required"]["image"][0] = self.input_files()
        return info

    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.described())

    async def object_info_node(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        info = self.described()
        return web.json_response({node: info[node]} if node in info else {})

    async def upload_image(self, request: web.Request) -> web.Response:
        """POST /upload/image as recorded: multipart `image`, `type`, `overwrite`."""
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        kind = str(form.get("type") or "input")
        self.files[(kind, "", image.filename)] = image.file.read()
        self.arrivals.append(f"upload {image.filename}")
        answer = captures.body("run_upload_loadimage/upload_image.json")
        answer.update(name=image.filename, type=kind)
        return web.json_response(answer)

    def partial_errors(self, prompt: dict[str, Any]) -> dict[str, Any]:
        recorded = captures.record("run_partially_invalid_prompt/post_prompt.json")
        if same_graph(recorded["request"]["json_body"]["prompt"], prompt):
            errors: dict[str, Any] = recorded["body"]["node_errors"]
            return errors
        return {}

    @staticmethod
    def is_output(node: dict[str, Any]) -> bool:
        return node.get("class_type") in captures.output_nodes()

    async def get_queue(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "queue_running": [] if self.running is None else [self.running.as_list()],
                "queue_pending": [item.as_list() for item in self.pending],
            }
        )

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.pending.clear()
        for prompt_id in body.get("delete", []):
            self.deletes.append(prompt_id)
            self.pending = [item for item in self.pending if item.prompt_id != prompt_id]
        await self.status()
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        self.interrupts.append(prompt_id)
        if self.running is not None and prompt_id in (None, self.running.prompt_id):
            self._interrupt = self.running.prompt_id
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        if "max_items" in request.query:
            items = items[-int(request.query["max_items"]) :]
        return web.json_response(dict(items))

    async def get_history_item(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        self.history_gets[prompt_id] += 1
        entry = self.history.get(prompt_id)
        return web.json_response({} if entry is None else {prompt_id: entry})

    async def view(self, request: web.Request) -> web.Response:
        key = (
            request.query.get("type", "output"),
            request.query.get("subfolder", ""),
            request.query.get("filename", ""),
        )
        data = self.files.get(key)
        if data is None:
            return web.Response(status=404)
        return web.Response(
            body=data,  # ComfyUI guesses the type from the name, as mimetypes does
            content_type=mimetypes.guess_type(key[2])[0] or "application/octet-stream",
            headers={"Content-Disposition": f'filename="{key[2]}"'},
        )

    # --- execution ------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                self.pending.sort(key=lambda item: item.number)
                item = self.running = self.pending.pop(0)
                self._interrupt = None
                await self.status()
                await self._execute(item)
                self.running = None
                await self.status()
                # The end of the prompt, sent once its history entry is written.
                end = fill("executing_end", node=None, prompt_id=item.prompt_id)
                await self.send_exec("executing", end, item.client_id)

    async def _execute(self, item: Item) -> None:
        sid, pid = item.client_id, item.prompt_id
        self.executed.append(pid)
        self.started.set()
        messages: list[list[Any]] = []

        async def note(kind: str, data: dict[str, Any]) -> None:
            messages.append([kind, data])
            await self.send_exec(kind, data, sid)

        signatures = {node: self.signature(item.prompt, node) for node in item.prompt}
        cached = [node for node in item.prompt if signatures[node] in self.cache]
        await note("execution_start", fill("execution_start", prompt_id=pid, timestamp=now_ms()))
        await note(
            "execution_cached",
            fill("execution_cached", nodes=cached, prompt_id=pid, timestamp=now_ms()),
        )
        states: dict[str, dict[str, Any]] = {}
        executed: list[str] = []
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        done: dict[str, dict[str, Any]] = {}  # the cache after this prompt
        dropped = False
        for node in self.order(item, set(cached)):
            class_type = item.prompt[node]["class_type"]
            if node in cached:  # only output nodes get here: their UI output is replayed
                ui = self.cache[signatures[node]]
                done[signatures[node]] = ui
                outputs[node], meta[node] = ui, self.meta(node)
                await self.send_exec(
                    "executed",
                    fill("executed", node=node, display_node=node, output=ui, prompt_id=pid),
                    sid,
                )
                states[node] = self.node_state(pid, node, 1, 1, "finished")
                await self.progress_state(pid, states, sid)
                continue
            states[node] = self.node_state(pid, node, 0.0, 1.0, "running")
            await self.progress_state(pid, states, sid)
            if class_type == self.drop_sockets_at and not dropped:
                dropped = True
                await self.drop_sockets()
            await self.send_exec(
                "executing", fill("executing", node=node, display_node=node, prompt_id=pid), sid
            )
            try:
                if self._interrupt == pid:
                    raise Interrupted(node)
                await self.run_node(item, node, states)
            except Interrupted as stop:
                self.cache = done
                data = fill(
                    "execution_interrupted",
                    prompt_id=pid,
                    node_id=stop.node,
                    node_type=item.prompt[stop.node]["class_type"],
                    executed=list(executed),
                    timestamp=now_ms(),
                )
                await note("execution_interrupted", data)
                self.remember(item, {}, "error", messages, {})
                return
            failure = self.failure(item, node, executed)
            if failure is not None:
                self.cache = done
                await note("execution_error", failure)
                self.remember(item, {}, "error", messages, {})
                return
            if self.is_output(item.prompt[node]) and class_type != "SaveImageWebsocket":
                ui = self.write_outputs(item, node)
                outputs[node] = ui
                meta[node] = self.meta(node)
                await self.send_exec(
                    "executed",
                    fill(
                        "executed",
                        node=node,
                        display_node=node,
                        output=ui,
                        prompt_id=pid,
                    ),
                    sid,
                )
            states[node] = {**states[node], "state": "finished", "value": states[node]["max"]}
            await self.progress_state(pid, states, sid)
            executed.append(node)
            done[signatures[node]] = outputs.get(node, {})
        self.cache = done
        await note(
            "execution_success", fill("execution_success", prompt_id=pid, timestamp=now_ms())
        )
        self.remember(item, outputs, "success", messages, meta)

    def remember(
        self,
        item: Item,
        outputs: dict[str, Any],
        status: str,
        messages: list[list[Any]],
        meta: dict[str, Any],
    ) -> None:
        self.history[item.prompt_id] = {
            "prompt": item.as_list(),
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": meta,
        }

    @staticmethod
    def meta(node: str) -> dict[str, Any]:
        return {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}

    def signature(self, prompt: dict[str, Any], node: str) -> str:
        """What the classic cache keys on: class and inputs, links replaced by the
        linked node's signature. SaveImageWebsocket changes every time (IS_CHANGED)."""
        spec = prompt[node]
        if spec.get("class_type") == "SaveImageWebsocket":
            return f"uncached:{uuid.uuid4()}"
        inputs = {
            name: self.signature(prompt, value[0])
            if isinstance(value, list) and len(value) == 2 and value[0] in prompt
            else value
            for name, value in spec.get("inputs", {}).items()
        }
        return json.dumps([spec.get("class_type"), inputs], sort_keys=True)

    def order(self, item: Item, cached: set[str]) -> list[str]:
        """The nodes the outputs need, inputs first (ComfyUI's topological order);
        a cached node's inputs are not needed."""
        seen: list[str] = []

        def visit(node: str) -> None:
            if node in seen or node not in item.prompt:
                return
            if node in cached:
                if self.is_output(item.prompt[node]):
                    seen.append(node)
                return
            for value in item.prompt[node].get("inputs", {}).values():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    visit(value[0])
            seen.append(node)

        for output in item.outputs:
            visit(output)
        return seen

    @staticmethod
    def node_state(pid: str, node: str, value: float, most: float, state: str) -> dict[str, Any]:
        entry = captures.template("progress_state")["nodes"]
        shape = dict(next(iter(entry.values())))
        shape.update(
            value=value,
            max=most,
            state=state,
            node_id=node,
            prompt_id=pid,
            display_node_id=node,
            parent_node_id=None,
            real_node_id=node,
        )
        return shape

    async def progress_state(
        self, pid: str, states: dict[str, dict[str, Any]], sid: str | None
    ) -> None:
        nodes = {n: dict(s) for n, s in states.items()}
        await self.send("progress_state", fill("progress_state", prompt_id=pid, nodes=nodes), sid)

    async def run_node(self, item: Item, node: str, states: dict[str, dict[str, Any]]) -> None:
        class_type = item.prompt[node]["class_type"]
        seconds = self.node_seconds.get(class_type, 0.0)
        if class_type in self.silent_seconds:  # no progress callbacks: not interruptible
            await asyncio.sleep(self.silent_seconds[class_type])
        elif class_type == "SaveImageWebsocket":
            batch = self.batch_size(item, node)
            await self.report_steps(item, node, states, batch, 0.0, preview=True)
        elif seconds > 0:
            steps = max(self.steps, int(seconds / 0.05))  # a callback at least every 50 ms
            await self.report_steps(item, node, states, steps, seconds, preview=False)
        else:
            await asyncio.sleep(0)

    async def report_steps(
        self,
        item: Item,
        node: str,
        states: dict[str, dict[str, Any]],
        steps: int,
        seconds: float,
        *,
        preview: bool,
    ) -> None:
        """A node with progress callbacks: progress_state, progress (and a preview)
        per step; an interrupt lands at the next callback."""
        pid, sid = item.prompt_id, item.client_id
        for step in range(steps):
            if self._interrupt == pid:
                raise Interrupted(node)
            states[node] = {**states[node], "value": step, "max": steps}
            await self.progress_state(pid, states, sid)
            progress = fill("progress", value=step, max=steps, prompt_id=pid, node=node)
            if preview and self.flags.get(sid or "", {}).get("supports_preview_metadata"):
                await self.send_preview(item, node, tiny_png(step))  # type 4 before progress
                await self.send("progress", progress, sid)
            elif preview:
                await self.send("progress", progress, sid)
                await self.send_preview(item, node, tiny_png(step))  # type 1 after progress
            else:
                await self.send("progress", progress, sid)
            await asyncio.sleep(seconds / steps)
        if self._interrupt == pid:
            raise Interrupted(node)

    @staticmethod
    def batch_size(item: Item, node: str) -> int:
        source = item.prompt[node].get("inputs", {}).get("images")
        if isinstance(source, list) and source and source[0] in item.prompt:
            size = item.prompt[source[0]].get("inputs", {}).get("batch_size", 1)
            return int(size) if isinstance(size, int) else 1
        return 1

    def failure(self, item: Item, node: str, executed: list[str]) -> dict[str, Any] | None:
        """The recorded IndexError of ImageToMask(channel="alpha") on an RGB image."""
        spec = item.prompt[node]
        if spec["class_type"] == "ImageToMask" and spec.get("inputs", {}).get("channel") == "alpha":
            return fill(
                "execution_error",
                prompt_id=item.prompt_id,
                node_id=node,
                node_type=spec["class_type"],
                executed=list(executed),
                timestamp=now_ms(),
            )
        return None

    def write_outputs(self, item: Item, node: str) -> dict[str, Any]:
        """An output node's UI output: a video node's PreviewVideo, else its images."""
        if item.prompt[node]["class_type"] in VIDEO_NODES:
            return {"images": self.write_video(item, node), "animated": [True]}
        return {"images": self.write_images(item, node)}

    def write_video(self, item: Item, node: str) -> list[dict[str, str]]:
        """SaveVideo (format auto/mp4: H.264 in MP4) or SaveWEBM (VP9 in WebM)."""
        spec = item.prompt[node]
        inputs = spec.get("inputs", {})
        source = inputs.get("images") if spec["class_type"] == "SaveWEBM" else inputs.get("video")
        fps = float(inputs.get("fps", 24.0))
        if spec["class_type"] == "SaveVideo" and _linked(item.prompt, source):
            fps = float(item.prompt[source[0]].get("inputs", {}).get("fps", 30.0))
            source = item.prompt[source[0]].get("inputs", {}).get("images")
        kind = VIDEO_NODES[spec["class_type"]]
        prefix = str(inputs.get("filename_prefix", "ComfyUI"))
        self.counters[prefix] += 1
        filename = f"{prefix}_{self.counters[prefix]:05d}_.{kind}"
        frames = self.frames_of(item.prompt, source)
        self.files[("output", "", filename)] = video_bytes(kind, frames, fps, (16, 16))
        return [{"filename": filename, "subfolder": "", "type": "output"}]

    def frames_of(self, prompt: dict[str, Any], link: Any) -> int:
        """How many images a link carries: a batch's size, a video latent's frames once
        decoded, else what the node's first linked input carries (1 at a source)."""
        if not _linked(prompt, link):
            return 1
        spec = prompt[link[0]]
        inputs = spec.get("inputs", {})
        if spec["class_type"] == "EmptyHunyuanLatentVideo":
            return 4 * ((int(inputs.get("length", 25)) - 1) // 4) + 1
        if isinstance(inputs.get("batch_size"), int):
            return int(inputs["batch_size"])
        upstream = next((inputs[k] for k in FRAME_INPUTS if _linked(prompt, inputs.get(k))), None)
        return self.frames_of(prompt, upstream)

    def write_images(self, item: Item, node: str) -> list[dict[str, str]]:
        spec = item.prompt[node]
        if spec["class_type"] == "SaveImage":
            prefix = str(spec.get("inputs", {}).get("filename_prefix", "ComfyUI"))
            kind = "output"
        else:
            prefix, kind = "ComfyUI_temp_rcc", "temp"
        self.counters[prefix] += 1
        filename = f"{prefix}_{self.counters[prefix]:05d}_.png"
        self.files[(kind, "", filename)] = tiny_png(self.counters[prefix])
        return [{"filename": filename, "subfolder": "", "type": kind}]

    async def drop_sockets(self) -> None:
        """The network drops every socket; new ones wait `hold_sockets_s` to connect."""
        self._held_until = time.monotonic() + self.hold_sockets_s
        for ws in list(self.sockets.values()):
            await ws.close()
        self.sockets.clear()
