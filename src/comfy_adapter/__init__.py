"""The ComfyUI adapter: job events become ComfyUI runs (issue 6)."""
