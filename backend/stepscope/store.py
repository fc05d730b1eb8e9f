"""Run directories: a manifest plus arrays (.npy) and images, on local disk or any fsspec URL.

The store is a leaf and format-agnostic: it knows run ids, paths, bytes and JSON, nothing about
models, jobs or which artifact lives where (stepscope.run_format names every path and types the
manifest; docs/run-format.md describes them). Every relative path is checked by `safe_relpath`,
so nothing a client names can leave a run.

On a local store nothing outside the store's root is ever read or written through it: a file is read only if it is
a regular file whose real path is the root's real path plus the run's and the file's own names, so a symlink at any
level below the root (the run directory itself included) or a FIFO reads as absent; a write whose directory resolves
elsewhere is refused. A run written by a job carries a `Fence`: every write first checks that the job's writer still
holds its lease, under a lock the janitor takes exclusively while it revokes one (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import fnmatch
import io
import json
import os
import posixpath
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from stepscope.run_format import MANIFEST

# Far above any manifest the engine writes (a 14B sweep's is a few MB), far below what would tie up the API to parse.
MAX_MANIFEST_BYTES = 16 * 2**20
LOCKS = ".locks"  # under the root: one lock file per job that writes runs (not a run id: RUN_ID needs no dot)
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class StoreError(ValueError):
    """A path or id that the store refuses, or an artifact that does not exist."""


class NotFound(StoreError):
    pass


class TooLarge(StoreError):
    """A file over the size a reader accepts (a manifest over MAX_MANIFEST_BYTES)."""


class Revoked(Exception):
    """The writer's lease is gone (the janitor failed its job): it must stop writing. Not a StoreError: nothing the
    writer does about its run can go on."""


class Fence:
    """Who may write a run: `check()` is true while the writer's lease holds. Every write happens inside `writing()`,
    which holds the job's lock file shared (local stores) and checks the lease; the janitor takes the same lock
    exclusively while it revokes a lease and labels the run, so a write is wholly before a revocation or refused."""

    def __init__(self, check: Callable[[], bool], lock_path: str | None, what: str):
        self.check = check
        self.lock_path = lock_path
        self.what = what

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        fd = None
        if self.lock_path is not None:
            # A descriptor per write: flock belongs to an open file, and writer threads must not share one.
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if not self.check():
                raise Revoked(
                    f"{self.what}: its writer's lease was revoked (the job was failed); nothing more is written"
                )
            yield
        finally:
            if fd is not None:
                os.close(fd)  # closing releases the lock


def _lock_file(root: str, job_id: str) -> str:
    return os.path.join(root, LOCKS, f"{check_run_id(job_id)}.lock")


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
        # The root is the operator's choice (it may be a symlink itself); below it, nothing is followed.
        self.real_root = os.path.realpath(self.root) if self.local else None

    def run_path(self, run_id: str) -> str:
        return posixpath.join(self.root, check_run_id(run_id))

    def _run(self, run_id: str, fence: Fence | None = None) -> RunDir:
        real = os.path.join(self.real_root, run_id) if self.real_root is not None else None
        return RunDir(self.fs, self.run_path(run_id), run_id, real_path=real, fence=fence)

    def _is_run_dir(self, run_id: str) -> bool:
        """Whether the run's directory exists; on a local store, as a directory and not a symlink."""
        path = self.run_path(run_id)
        if not self.local:
            return self.fs.exists(path)
        try:
            return stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError:
            return False

    def create(self, run_id: str | None = None, fence: Fence | None = None) -> RunDir:
        """A run to write; with `fence`, every write checks that its writer still holds its lease."""
        run_id = run_id or new_run_id()
        run = self._run(run_id, fence)
        if self.fs.exists(posixpath.join(run.path, MANIFEST)):
            raise StoreError(f"run {run_id} already exists")
        return run

    def open(self, run_id: str, require_manifest: bool = True, fence: Fence | None = None) -> RunDir:
        """An existing run; without `require_manifest`, also one that holds only its inputs so far. A symlinked run
        directory (local stores) is no run."""
        if not self._is_run_dir(run_id):
            raise NotFound(f"no run {run_id}")
        run = self._run(run_id, fence)
        if require_manifest and not run.is_regular_file(MANIFEST):
            raise NotFound(f"no run {run_id}")
        return run

    def exists(self, run_id: str) -> bool:
        try:
            self.open(run_id)
        except StoreError:
            return False
        return True

    def delete(self, run_id: str) -> bool:
        """Remove a run directory (a symlink in its place is removed, never followed); False if there was none."""
        path = self.run_path(run_id)
        if self.local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_lock_file(self.root, run_id))
            if os.path.islink(path):
                os.unlink(path)
                return True
        if not self.fs.exists(path):
            return False
        self.fs.rm(path, recursive=True)
        return True

    def run_ids(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        names = [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.root, detail=False)]
        return sorted(n for n in names if RUN_ID.match(n) and self._is_run_dir(n))

    # -- fencing (docs/operations.md) ---------------------------------------------------------
    def fence(self, job_id: str, check: Callable[[], bool]) -> Fence:
        """The fence of job `job_id`'s writer: `check()` says whether its lease still holds. On local stores its
        writes hold the job's lock file shared; object stores have no such lock (the check alone guards them)."""
        lock = None
        if self.local:
            os.makedirs(os.path.join(self.root, LOCKS), exist_ok=True)
            lock = _lock_file(self.root, job_id)
        return Fence(check, lock, f"job {job_id}")

    @contextlib.contextmanager
    def exclusive(self, job_id: str, timeout: float) -> Iterator[bool]:
        """Hold job `job_id`'s write lock exclusively (no write of its writer is in progress while held); yields
        False if a writer still held it after `timeout` seconds (one stopped in the middle of a write)."""
        if not self.local:
            yield True
            return
        os.makedirs(os.path.join(self.root, LOCKS), exist_ok=True)
        fd = os.open(_lock_file(self.root, job_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(fd)


class RunDir:
    """One run directory. Writes are whole-file and the manifest is replaced atomically."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        run_id: str,
        *,
        real_path: str | None = None,
        fence: Fence | None = None,
    ):
        self.fs = fs
        self.path = path
        self.run_id = run_id
        self.local = isinstance(fs, LocalFileSystem)
        # Local runs: the real path every file of the run must have (a store's resolved root plus the run's name).
        self.real_path = (real_path or os.path.realpath(path)) if self.local else None
        self.fence = fence
        self._manifest_lock = threading.Lock()

    @classmethod
    def at(cls, url: str) -> RunDir:
        """A run directory at an explicit local path or URL (the CLI's --out)."""
        fs, path = filesystem(str(url))
        return cls(fs, path.rstrip("/"), posixpath.basename(path.rstrip("/")) or "run")

    def subdir(self, rel: str) -> RunDir:
        """A run directory inside this one (a bench instance), with the same checks and fence."""
        rel = safe_relpath(rel)
        real = os.path.join(self.real_path, *rel.split("/")) if self.real_path is not None else None
        path = posixpath.join(self.path, rel)
        return RunDir(self.fs, path, posixpath.basename(rel), real_path=real, fence=self.fence)

    def _abs(self, rel: str) -> str:
        return posixpath.join(self.path, safe_relpath(rel))

    def _real(self, rel: str) -> str:
        return os.path.join(self.real_path, *safe_relpath(rel).split("/"))

    def write_bytes(self, rel: str, data: bytes) -> str:
        target = self._abs(rel)
        with self.fence.writing() if self.fence is not None else contextlib.nullcontext():
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            if self.local:
                if os.path.realpath(posixpath.dirname(target)) != posixpath.dirname(self._real(rel)):
                    raise StoreError(f"artifact path {rel!r} leads through a symlink: not written")
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

    def is_regular_file(self, rel: str) -> bool:
        """Whether `rel` is a regular file of the run, reached without following any symlink (on a local store:
        its real path is the run's real path plus `rel`)."""
        target = self._abs(rel)
        if not self.local:  # object stores have no symlinks
            return self.fs.isfile(target)
        try:
            if not stat.S_ISREG(os.lstat(target).st_mode):
                return False
        except OSError:
            return False
        return os.path.realpath(target) == self._real(rel)

    def open_file(self, rel: str):
        """The file opened for reading, if it is a regular file of the run (NotFound otherwise)."""
        target = self._abs(rel)
        if not self.local:
            if not self.fs.isfile(target):
                raise NotFound(f"no artifact {rel}")
            return self.fs.open(target, "rb")
        try:
            # O_NOFOLLOW: a symlink as the last name fails; O_NONBLOCK: a FIFO does not hang the open.
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENXIO, errno.EACCES):
                raise NotFound(f"no artifact {rel}") from None
            raise
        try:
            opened = os.fstat(fd)
            # The file opened is the one at the run's real path (no directory on the way was a symlink).
            same = (
                stat.S_ISREG(opened.st_mode)
                and os.path.realpath(target) == self._real(rel)
                and os.path.samestat(opened, os.stat(self._real(rel)))
            )
        except OSError:
            same = False
        if not same:
            os.close(fd)
            raise NotFound(f"no artifact {rel}")
        return os.fdopen(fd, "rb")

    def read_bytes(self, rel: str, limit: int | None = None) -> bytes:
        """The file's bytes (a regular file of the run only); TooLarge past `limit` bytes."""
        try:
            with self.open_file(rel) as f:
                data = f.read() if limit is None else f.read(limit + 1)
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no artifact {rel}") from None
        if limit is not None and len(data) > limit:
            raise TooLarge(f"{rel} is over the {limit} byte limit")
        return data

    def read_array(self, rel: str) -> np.ndarray:
        return decode_npy(self.read_bytes(rel))

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def manifest(self) -> dict:
        """manifest.json parsed (TooLarge past MAX_MANIFEST_BYTES)."""
        return json.loads(self.read_bytes(MANIFEST, limit=MAX_MANIFEST_BYTES))

    def file_version(self, rel: str) -> tuple | None:
        """What changes whenever the file does ((mtime, size, inode) locally), for caches; None if not a regular
        file of the run."""
        if not self.is_regular_file(rel):
            return None
        if not self.local:
            info = self.fs.info(self._abs(rel))
            return (info.get("mtime") or info.get("LastModified") or info.get("ETag"), info.get("size"))
        st = os.stat(self._real(rel))
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)

    def exists(self, rel: str) -> bool:
        """Whether `rel` is a regular file of the run (what `read_bytes` reads)."""
        return self.is_regular_file(rel)

    def seconds_since_modified(self, rel: str) -> float | None:
        """How long ago the file last changed, or None where the filesystem does not say."""
        try:
            modified = self.fs.modified(self._abs(rel))
        except (NotImplementedError, OSError, ValueError):
            return None
        if modified.tzinfo is None:  # some fsspec filesystems give UTC without a zone (the local one gives it)
            modified = modified.replace(tzinfo=datetime.timezone.utc)
        return max(0.0, time.time() - modified.timestamp())

    def local_path(self, rel: str) -> str | None:
        """The file's path on this machine when the store is local (for zero-copy serving); callers check
        `is_regular_file` first."""
        if self.local:
            return self._abs(rel)
        return None

    def _readable(self, rel: str) -> bool:
        try:
            return self.is_regular_file(rel)
        except StoreError:  # a name no client could ask for (a temporary `.part`, odd characters)
            return False

    def glob(self, pattern: str) -> list[str]:
        """Relative paths of the run's regular files matching a glob such as `trajectories/*/x0/*.npy` (`*` stays
        within one name)."""
        if self.local:
            parts = pattern.split("/")
            return [
                rel
                for rel in self.files()
                if len(rel.split("/")) == len(parts)
                and all(fnmatch.fnmatchcase(name, part) for name, part in zip(rel.split("/"), parts, strict=True))
            ]
        found = (posixpath.relpath(p, self.path) for p in self.fs.glob(posixpath.join(self.path, pattern)))
        return sorted(rel for rel in found if self._readable(rel))

    def files(self) -> Iterator[str]:
        """Every regular file of the run, relative to it (no symlink, nothing reached through one, and a symlinked
        directory is not walked into)."""
        if self.local:
            if not os.path.isdir(self.path) or os.path.islink(self.path):
                return
            found = []
            for top, dirs, names in os.walk(self.path, followlinks=False):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.extend(posixpath.relpath(posixpath.join(top, n), self.path) for n in names)
        else:
            found = [posixpath.relpath(path, self.path) for path in self.fs.find(self.path)]
        for rel in sorted(found):
            if not rel.endswith(".part") and self._readable(rel):
                yield rel


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
