"""The application: config, job store, fair queue, scheduler over ComfyUI backends."""
