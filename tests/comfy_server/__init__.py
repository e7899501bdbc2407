"""A ComfyUI test server built from the recorded protocol (see server.py)."""

from tests.comfy_server.server import ComfyServer, tiny_png

__all__ = ["ComfyServer", "tiny_png"]
