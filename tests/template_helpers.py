"""Helpers for the template and upload tests: a test template, a portal whose workflow
check asks a ComfyUI test server, tiny real images."""

from __future__ import annotations

import asyncio
import copy
import io
from typing import Any

import httpx
from PIL import Image

from portal.app import create_app
from rcc.config import Settings, load_settings

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"

# Image to image: a text prompt, a seed, a bounded number (denoise), an integer (steps)
# and an image upload bound to LoadImage.
IMAGE_TO_IMAGE: dict[str, Any] = {
    "name": "Image to image",
    "description": "Repaint an image of yours.",
    "job_type": "IMAGE_TASK",
    "workflow": {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "5": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
        "6": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": 0,
                "steps": 10,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["5", 0],
                "denoise": 0.6,
            },
        },
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "i2i"}},
    },
    "inputs": [
        {"name": "prompt", "kind": "text", "node": "2", "field": "text", "max_length": 200},
        {"name": "seed", "kind": "seed", "node": "6", "field": "seed"},
        {
            "name": "denoise",
            "kind": "number",
            "node": "6",
            "field": "denoise",
            "min": 0.1,
            "max": 1.0,
            "default": 0.6,
        },
        {
            "name": "steps",
            "kind": "integer",
            "node": "6",
            "field": "steps",
            "min": 1,
            "max": 30,
            "default": 10,
        },
        {"name": "image", "kind": "image", "node": "4", "field": "image"},
    ],
    "price": {"rule": "fixed", "rcc": 3},
}


def template_spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(IMAGE_TO_IMAGE)
    spec.update(changes)
    return spec


def png(width: int = 8, height: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def settings_with_backends(base: Settings, urls: list[str], **env: str) -> Settings:
    """The test settings, with COMFYUI_URLS (and more) set for the workflow check."""
    return load_settings(
        {
            "DATABASE_URL": base.database_url or "",
            "RCC_DATA_DIR": str(base.data_dir),
            "RCC_SESSION_SECRET": "test-session-secret",
            "COMFYUI_URLS": ",".join(urls),
            **env,
        }
    )


def client_for(settings: Settings, pool: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, pool=pool), client=("127.0.0.1", 1))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


async def upload(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    body: bytes,
    name: str = "me.png",
    ctype: str = "image/png",
) -> httpx.Response:
    return await http.post("/uploads", files={"file": (name, body, ctype)}, headers=headers)


async def finished(http: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> Any:
    """The job's view once it has succeeded or failed (15 s at most), through the API."""
    for _ in range(750):
        job = (await http.get(f"/jobs/{job_id}", headers=headers)).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} is still {job['status']}")
