"""ComfyUI operations beside the adapter: the container (Docker Engine API) and model files."""
