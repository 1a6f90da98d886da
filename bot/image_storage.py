"""Where image bytes live: a local folder (the embedded default) or an S3-compatible bucket.

Images are named by *keys*: relative, slash-separated paths such as `1234_0.png` or
`image_prompts/ab12….png`. A key means the same image to every process that shares the storage, so a
process can upscale an image another process made. Both implementations are async and raise
`FileNotFoundError` for a key that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from obstore._store._client import ClientConfig  # the TypedDict of S3Store's client_options
    from obstore.store import S3Store

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


class StorageError(OSError):
    """The storage refused a write or a delete; the message names the folder or the bucket."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One stored image: its key, when it was last written (unix seconds) and its size in bytes."""

    key: str
    modified: float
    size: int


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key (no `..`, no leading slash), else raise ValueError."""
    if not _KEY.fullmatch(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"not a storage key: {key!r}")
    return key


class ImageStorage(Protocol):
    """What the bot needs from a place that keeps images."""

    @property
    def location(self) -> str:
        """Where the images are, for operators (a folder, or `s3://bucket/prefix`); never a secret."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing what was there; readers never see a partial object."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes stored under `key`; `FileNotFoundError` when there are none."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether `key` holds an object."""
        ...

    async def touch(self, key: str) -> bool:
        """Mark `key` as written now (retention ages by it); False when it does not exist."""
        ...

    async def delete(self, keys: Iterable[str]) -> int:
        """Delete the objects that exist among `keys`; return how many were deleted."""
        ...

    async def list(self, prefix: str = "") -> list[StoredObject]:
        """Every object whose key starts with `prefix` (a folder such as `image_prompts/`)."""
        ...


class FolderStorage:
    """Images as files under one folder; writes go through a temporary file and an atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        """The folder."""
        return str(self.root)

    def path(self, key: str) -> Path:
        """The file that holds `key`."""
        return self.root / PurePosixPath(check_key(key))

    async def put(self, key: str, data: bytes) -> None:
        """Write the file atomically (a reader sees the old file or the new one, never half)."""
        path = self.path(key)
        try:
            await asyncio.to_thread(write_atomically, path, data)
        except OSError as exc:
            raise StorageError(f"cannot write {path} (storage.output_dir): {exc.strerror or exc}") from exc

    async def get(self, key: str) -> bytes:
        """Read the file."""
        return await asyncio.to_thread(self.path(key).read_bytes)

    async def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return await asyncio.to_thread(self.path(key).is_file)

    async def touch(self, key: str) -> bool:
        """Set the file's modification time to now."""

        def touch() -> bool:
            try:
                os.utime(self.path(key))
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(touch)

    async def delete(self, keys: Iterable[str]) -> int:
        """Remove the files; missing ones are skipped."""
        paths = [self.path(key) for key in keys]

        def delete() -> int:
            removed = 0
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
            return removed

        return await asyncio.to_thread(delete)

    async def list(self, prefix: str = "") -> list[StoredObject]:
        """The files under the folder whose key starts with `prefix`."""

        def scan() -> list[StoredObject]:
            found = []
            base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
            if not base.is_dir():
                return []
            for path in base.rglob("*"):
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix) or key.endswith(".part"):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if path.is_file():
                    found.append(StoredObject(key, stat.st_mtime, stat.st_size))
            return sorted(found, key=lambda o: o.key)

        return await asyncio.to_thread(scan)


class S3Storage:
    """Images as objects in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, …), through obstore.

    Credentials come from the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
    `AWS_SESSION_TOKEN`) environment; nothing secret is kept on this object or shown by `location`.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        from obstore.store import S3Store

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        environ = dict(os.environ if env is None else env)
        options: dict[str, Any] = {}
        for name, option in (
            ("AWS_ACCESS_KEY_ID", "access_key_id"),
            ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
            ("AWS_SESSION_TOKEN", "session_token"),
        ):
            if environ.get(name):
                options[option] = environ[name]
        region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        client_options: ClientConfig = {"timeout": "60s", "connect_timeout": "10s"}
        if endpoint_url:
            options["endpoint"] = endpoint_url
            client_options["allow_http"] = endpoint_url.startswith("http://")
        self._store: S3Store = S3Store(
            bucket,
            prefix=self.prefix or None,
            region=region,
            client_options=client_options,
            **options,
        )

    @property
    def location(self) -> str:
        """`s3://bucket/prefix` (and the endpoint, when one is set)."""
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    def __repr__(self) -> str:
        return f"S3Storage({self.location!r})"

    async def put(self, key: str, data: bytes) -> None:
        """Upload the object (S3 makes a PUT visible whole or not at all)."""
        import obstore

        try:
            await obstore.put_async(self._store, check_key(key), data)
        except FileNotFoundError as exc:  # no such bucket
            raise StorageError(f"cannot write {key} to {self.location} (storage.s3): {exc}") from exc
        except Exception as exc:
            raise StorageError(f"cannot write {key} to {self.location} (storage.s3): {exc}") from exc

    async def get(self, key: str) -> bytes:
        """Download the object."""
        import obstore

        result = await obstore.get_async(self._store, check_key(key))
        return bytes(await result.bytes_async())

    async def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request)."""
        import obstore

        try:
            await obstore.head_async(self._store, check_key(key))
        except FileNotFoundError:
            return False
        return True

    async def touch(self, key: str) -> bool:
        """S3 objects cannot be touched in place: copy the object onto itself to renew its date."""
        import obstore

        try:
            await obstore.copy_async(self._store, check_key(key), check_key(key))
        except FileNotFoundError:
            return False
        except Exception:
            # Some S3 servers refuse a copy onto itself; upload the bytes again instead.
            try:
                data = await self.get(key)
            except FileNotFoundError:
                return False
            await self.put(key, data)
        return True

    async def delete(self, keys: Iterable[str]) -> int:
        """Delete the objects (in batches of up to 1000, as S3 allows); missing ones count as deleted."""
        import obstore

        wanted = [check_key(key) for key in keys]
        for start in range(0, len(wanted), 1000):
            try:
                await obstore.delete_async(self._store, wanted[start : start + 1000])
            except Exception as exc:
                raise StorageError(f"cannot delete from {self.location} (storage.s3): {exc}") from exc
        return len(wanted)

    async def list(self, prefix: str = "") -> list[StoredObject]:
        """Every object under `prefix`."""
        import obstore

        found: list[StoredObject] = []
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        async for batch in obstore.list(self._store, folder):
            for meta in batch:
                key = str(meta["path"])
                if key.startswith(prefix):
                    found.append(StoredObject(key, meta["last_modified"].timestamp(), int(meta["size"])))
        return sorted(found, key=lambda o: o.key)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `path.part`, synced and renamed: a reader sees all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
