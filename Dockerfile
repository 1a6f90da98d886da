# comfy-imagine: the Discord bot only; ComfyUI runs elsewhere (see backends[].url in the config).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 imagine \
    && mkdir -p /data /config \
    && chown imagine:imagine /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY comfy ./comfy
RUN pip install . && rm -rf /app/build

# The database and the images live here; in config.toml use absolute paths under /data.
VOLUME ["/data"]
USER imagine

# Healthy while the config is valid and the ComfyUI backends answer (exit 0 of `check`).
HEALTHCHECK --interval=60s --timeout=20s --start-period=20s --retries=3 \
    CMD ["comfy-imagine", "check", "--config", "/config/config.toml"]

ENTRYPOINT ["comfy-imagine"]
CMD ["run", "--config", "/config/config.toml"]
