"""A real S3-compatible server for tests: moto's server on loopback, started once per test session."""

from __future__ import annotations

import logging
import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# Dummy credentials: moto accepts any, and they must never be real ones.
TEST_ENV = {"AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}
ENDPOINT_ENV = "COMFY_IMAGINE_TEST_S3_URL"


@dataclass(frozen=True, slots=True)
class S3Server:
    """An S3 endpoint and a way to make fresh buckets on it."""

    endpoint_url: str
    env: dict[str, str]

    def new_bucket(self) -> str:
        """Create an empty bucket with a fresh name and return the name."""
        name = f"test-bucket-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(f"{self.endpoint_url}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass
        return name


def start_s3_server() -> tuple[S3Server, object | None]:
    """The server named by COMFY_IMAGINE_TEST_S3_URL, else a moto server started here (and its handle)."""
    url = os.environ.get(ENDPOINT_ENV)
    if url:
        return S3Server(url.rstrip("/"), {k: os.environ.get(k, v) for k, v in TEST_ENV.items()}), None
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return S3Server(f"http://{host}:{port}", dict(TEST_ENV)), server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One S3 server for the test session (moto on loopback, or COMFY_IMAGINE_TEST_S3_URL)."""
    server, handle = start_s3_server()
    yield server
    if handle is not None:
        handle.stop()  # type: ignore[attr-defined]
