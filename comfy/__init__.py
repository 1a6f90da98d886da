"""ComfyUI layer: client, typed events, workflow templates and Midjourney-style parameters."""
