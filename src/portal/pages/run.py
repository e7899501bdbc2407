"""Run: pick image or video, paste, upload or pick a workflow, see the cost, confirm."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.params import QueryParameter
from litestar.response import Template

from portal.pages.base import member, render
from rcc.domain.prices import JOB_PRICES_RCC

# Ready-made ComfyUI API prompts (core nodes only), offered next to the user's own
# saved workflows (those live in the browser's storage).
EXAMPLES: dict[str, dict[str, Any]] = {
    "Inverted colour square (image)": {
        "type": "IMAGE_TASK",
        "workflow": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 16744448},
            },
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {
                "class_type": "SaveImage",
                "inputs": {"images": ["2", 0], "filename_prefix": "rcc"},
            },
        },
    },
    "Eight-frame animation (video)": {
        "type": "VIDEO_TASK",
        "workflow": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 256, "height": 256, "batch_size": 8, "color": 3355647},
            },
            "2": {
                "class_type": "SaveAnimatedWEBP",
                "inputs": {
                    "images": ["1", 0],
                    "filename_prefix": "rcc",
                    "fps": 8.0,
                    "lossless": False,
                    "quality": 80,
                    "method": "default",
                },
            },
        },
    },
}


@get("/app/run")
async def run(
    request: Request[Any, Any, Any],
    kind: Annotated[str | None, QueryParameter(name="type")] = None,
) -> Template:
    viewer = await member(request)
    chosen = kind if kind in JOB_PRICES_RCC else "IMAGE_TASK"
    return render(
        request,
        "run.html",
        viewer,
        nav="run",
        prices=JOB_PRICES_RCC,
        chosen=chosen,
        examples=EXAMPLES,
    )


handlers = [run]
