"""The templates a fresh install shows: published once, as events, by the system.

Each is published under its own idempotency key, so every process that opens its pool
may try (and all but the first get the first answer back); an admin who unpublishes or
revises a sample later is never overridden, since the key has already been used."""

from __future__ import annotations

from typing import Any

import asyncpg

from rcc.domain.errors import DomainError
from rcc.service.bus import execute_alone
from rcc.service.handlers import Done
from rcc.service.template_commands import PublishTemplate

TEXT_TO_IMAGE_ID = "text-to-image"

# The KSampler's steps and seed (node "5" in both samples), offered alike by each.
_STEPS: dict[str, Any] = {
    "name": "steps", "kind": "integer", "node": "5", "field": "steps",
    "min": 1, "max": 50, "default": 20,
}  # fmt: skip
_SEED: dict[str, Any] = {
    "name": "seed", "kind": "seed", "node": "5", "field": "seed",
    "label": "Seed (empty: random)",
}  # fmt: skip


# Stable Diffusion 1.5 text to image: checkpoint -> prompts -> empty latent -> sampler ->
# VAE decode -> SaveImage. The checkpoint is a model file the backend must have
# (the check before paying refuses the job when it does not).
TEXT_TO_IMAGE: dict[str, Any] = {
    "name": "Text to image",
    "description": "Describe a picture; Stable Diffusion 1.5 paints it.",
    "job_type": "IMAGE_TASK",
    "workflow": {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
        },
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": 0,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "rcc"}},
    },
    "inputs": [
        {
            "name": "prompt",
            "kind": "text",
            "node": "2",
            "field": "text",
            "max_length": 2000,
            "label": "What to paint",
        },
        {
            "name": "negative",
            "kind": "text",
            "node": "3",
            "field": "text",
            "max_length": 2000,
            "default": "",
            "label": "What to avoid",
        },
        {
            "name": "width",
            "kind": "integer",
            "node": "4",
            "field": "width",
            "min": 256,
            "max": 1024,
            "step": 64,
            "default": 512,
        },
        {
            "name": "height",
            "kind": "integer",
            "node": "4",
            "field": "height",
            "min": 256,
            "max": 1024,
            "step": 64,
            "default": 512,
        },
        _STEPS,
        _SEED,
    ],
    # 0.1 RCC per megapixel-step, at least 1: 512 x 512 x 20 steps holds 1 RCC,
    # 1024 x 1024 x 50 steps holds 6.
    "price": {
        "rule": "per_megapixel_step",
        "width": "width",
        "height": "height",
        "steps": "steps",
        "millircc": 100,
        "min_rcc": 1,
    },
}


IMAGE_TO_IMAGE_ID = "image-to-image"

# Stable Diffusion 1.5 image to image: the user's upload (LoadImage, sent to the backend
# before the prompt) encoded to a latent and repainted at a chosen strength.
IMAGE_TO_IMAGE: dict[str, Any] = {
    "name": "Image to image",
    "description": "Upload a picture and describe how to repaint it.",
    "job_type": "IMAGE_TASK",
    "workflow": {
        **{k: v for k, v in TEXT_TO_IMAGE["workflow"].items() if k in ("1", "2", "3", "6")},
        "4": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                **TEXT_TO_IMAGE["workflow"]["5"]["inputs"],
                "latent_image": ["8", 0],
                "denoise": 0.6,
            },
        },
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "i2i"}},
        "8": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
    },
    "inputs": [
        {"name": "image", "kind": "image", "node": "4", "field": "image", "label": "Your picture"},
        {
            "name": "prompt",
            "kind": "text",
            "node": "2",
            "field": "text",
            "max_length": 2000,
            "label": "How to repaint it",
        },
        {
            "name": "strength",
            "kind": "number",
            "node": "5",
            "field": "denoise",
            "min": 0.1,
            "max": 1.0,
            "step": 0.05,
            "default": 0.6,
        },
        _STEPS,
        _SEED,
    ],
    "price": {"rule": "fixed", "rcc": 2},
}
SAMPLES = {TEXT_TO_IMAGE_ID: TEXT_TO_IMAGE, IMAGE_TO_IMAGE_ID: IMAGE_TO_IMAGE}


async def publish_samples(pool: asyncpg.Pool) -> list[Done | DomainError]:
    """Publish the sample templates once per database (the first answers after that)."""
    return [
        await execute_alone(
            pool,
            PublishTemplate(template_id=template_id, spec=spec, actor="system"),
            idempotency_key=f"sample-template:{template_id}:1",
        )
        for template_id, spec in SAMPLES.items()
    ]
