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

# Healthy while the bot's Discord session is up and its database answers: `health` asks the running bot's
# /healthz, so the config must set [metrics] port (config.example.toml does). Backends being down is not
# unhealthy: jobs wait in the queue until one is back.
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
    CMD ["comfy-imagine", "health", "--config", "/config/config.toml"]

ENTRYPOINT ["comfy-imagine"]
CMD ["run", "--config", "/config/config.toml"]
