"""Run directories: a manifest plus arrays (.npy) and images, on local disk or any fsspec URL.

The store is a leaf and format-agnostic: it knows run ids, paths, bytes and JSON, nothing about
models, jobs or which artifact lives where (stepscope.run_format names every path and types the
manifest; docs/run-format.md describes them). Every relative path is checked by `safe_relpath`,
so nothing a client names can leave a run.
"""

from __future__ import annotations

import datetime
import io
import json
import posixpath
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

MANIFEST = "manifest.json"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class StoreError(ValueError):
    """A path or id that the store refuses, or an artifact that does not exist."""


class NotFound(StoreError):
    pass


def new_run_id() -> str:
    return uuid.uuid4().hex


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise StoreError(f"invalid run id {run_id!r}")
    return run_id


def safe_relpath(rel: str) -> str:
    """Return `rel` if it names a file inside a run: no '..', no absolute path, plain segments only."""
    if not isinstance(rel, str) or not rel or len(rel) > 512:
        raise StoreError("artifact path must be a non-empty relative path")
    if rel.startswith("/") or "\\" in rel or "%" in rel or "\x00" in rel:
        raise StoreError(f"artifact path {rel!r} is not a plain relative path")
    parts = rel.split("/")
    for part in parts:
        if part in ("", ".", "..") or not _SEGMENT.match(part):
            raise StoreError(f"artifact path {rel!r} has an invalid segment {part!r}")
    return posixpath.join(*parts)


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_image(pixels: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """Encode an (H, W, 3) uint8 array as PNG, JPEG or WebP."""
    buf = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=1)  # speed over size: previews are tiny
    elif fmt in ("jpg", "jpeg"):
        image.save(buf, format="JPEG", quality=quality)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=quality)
    else:
        raise StoreError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def filesystem(url: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and root path for a local path or URL.

    Credentials and endpoints come from the environment as fsspec and the backend read them
    (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, FSSPEC_S3_ENDPOINT_URL or AWS_ENDPOINT_URL).
    """
    protocol, _ = fsspec.core.split_protocol(url)
    if protocol not in (None, "file", "local"):
        # Other processes and hosts write into a shared store: a cached listing would hide their files.
        storage_options.setdefault("use_listings_cache", False)
    return fsspec.core.url_to_fs(url, **storage_options)


def encode_mp4(frames: np.ndarray, fps: int = 16) -> bytes:
    """(T, H, W, 3) uint8 → H.264 MP4 bytes (sizes padded to even numbers for the codec)."""
    import imageio.v3 as iio  # imported on first use: it loads ffmpeg's plugin

    t, h, w, c = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    # "veryfast" encodes 81 frames at 480x832 about 4x faster than x264's default, at similar size.
    iio.imwrite(
        buf,
        frames,
        extension=".mp4",
        fps=fps,
        codec="libx264",
        macro_block_size=1,
        ffmpeg_params=["-preset", "veryfast"],
    )
    return buf.getvalue()


class Store:
    """All runs under one root: a local directory or an fsspec URL such as s3://bucket/runs."""

    def __init__(self, root: str, **storage_options: Any):
        self.url = str(root)
        self.fs, self.root = filesystem(self.url, **storage_options)
        self.local = isinstance(self.fs, LocalFileSystem)
        if self.local:
            self.fs.makedirs(self.root, exist_ok=True)

    def run_path(self, run_id: str) -> str:
        return posixpath.join(self.root, check_run_id(run_id))

    def create(self, run_id: str | None = None) -> RunDir:
        run_id = run_id or new_run_id()
        path = self.run_path(run_id)
        if self.fs.exists(posixpath.join(path, MANIFEST)):
            raise StoreError(f"run {run_id} already exists")
        return RunDir(self.fs, path, run_id)

    def open(self, run_id: str, require_manifest: bool = True) -> RunDir:
        """An existing run; without `require_manifest`, also one that holds only its inputs so far."""
        path = self.run_path(run_id)
        if not self.fs.exists(posixpath.join(path, MANIFEST) if require_manifest else path):
            raise NotFound(f"no run {run_id}")
        return RunDir(self.fs, path, run_id)

    def exists(self, run_id: str) -> bool:
        try:
            return self.fs.exists(posixpath.join(self.run_path(run_id), MANIFEST))
        except StoreError:
            return False

    def delete(self, run_id: str) -> bool:
        """Remove a run directory; False if there was none."""
        path = self.run_path(run_id)
        if not self.fs.exists(path):
            return False
        self.fs.rm(path, recursive=True)
        return True

    def run_ids(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        names = [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.root, detail=False)]
        return sorted(n for n in names if RUN_ID.match(n))


class RunDir:
    """One run directory. Writes are whole-file and the manifest is replaced atomically."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, run_id: str):
        self.fs = fs
        self.path = path
        self.run_id = run_id
        self._manifest_lock = threading.Lock()

    @classmethod
    def at(cls, url: str) -> RunDir:
        """A run directory at an explicit local path or URL (the CLI's --out)."""
        fs, path = filesystem(str(url))
        return cls(fs, path.rstrip("/"), posixpath.basename(path.rstrip("/")) or "run")

    def _abs(self, rel: str) -> str:
        return posixpath.join(self.path, safe_relpath(rel))

    def write_bytes(self, rel: str, data: bytes) -> str:
        target = self._abs(rel)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        if isinstance(self.fs, LocalFileSystem):
            # Write then rename: a reader never sees half an artifact.
            tmp = f"{target}.{uuid.uuid4().hex[:8]}.part"
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            self.fs.mv(tmp, target)
        else:
            self.fs.pipe_file(target, data)
        return rel

    def write_array(self, rel: str, array: np.ndarray) -> str:
        return self.write_bytes(rel, encode_npy(array))

    def write_image(self, rel: str, pixels: np.ndarray, quality: int = 90) -> str:
        fmt = rel.rsplit(".", 1)[-1].lower()
        return self.write_bytes(rel, encode_image(pixels, fmt, quality))

    def write_json(self, rel: str, obj: Any) -> str:
        return self.write_bytes(rel, json.dumps(obj, indent=1, default=_json_default).encode())

    def write_manifest(self, manifest: dict) -> None:
        with self._manifest_lock:
            self.write_json(MANIFEST, manifest)

    def read_bytes(self, rel: str) -> bytes:
        target = self._abs(rel)
        try:
            return self.fs.cat_file(target)
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no artifact {rel}") from None

    def read_array(self, rel: str) -> np.ndarray:
        return decode_npy(self.read_bytes(rel))

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def manifest(self) -> dict:
        return self.read_json(MANIFEST)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._abs(rel))

    def seconds_since_modified(self, rel: str) -> float | None:
        """How long ago the file last changed, or None where the filesystem does not say."""
        try:
            modified = self.fs.modified(self._abs(rel))
        except (NotImplementedError, OSError, ValueError):
            return None
        if modified.tzinfo is None:  # some fsspec filesystems give UTC without a zone (the local one gives it)
            modified = modified.replace(tzinfo=datetime.timezone.utc)
        return max(0.0, time.time() - modified.timestamp())

    def open_file(self, rel: str):
        target = self._abs(rel)
        if not self.fs.isfile(target):
            raise NotFound(f"no artifact {rel}")
        return self.fs.open(target, "rb")

    def local_path(self, rel: str) -> str | None:
        """The file's path on this machine when the store is local (for zero-copy serving)."""
        if isinstance(self.fs, LocalFileSystem):
            return self._abs(rel)
        return None

    def glob(self, pattern: str) -> list[str]:
        """Relative paths of the run's files matching a glob such as `trajectories/*/x0/*.npy`."""
        return sorted(posixpath.relpath(p, self.path) for p in self.fs.glob(posixpath.join(self.path, pattern)))

    def files(self) -> Iterator[str]:
        """Every file of the run, relative to it."""
        for path in sorted(self.fs.find(self.path)):
            rel = posixpath.relpath(path, self.path)
            if not rel.endswith(".part"):
                yield rel


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
