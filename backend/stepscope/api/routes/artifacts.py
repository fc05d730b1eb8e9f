"""A job's run directory over HTTP: manifest, file list and every artifact.

Arrays are served as NumPy .npy files (a documented binary format: a small header with dtype
and shape, then the raw little-endian data); the headers X-Dtype and X-Shape repeat both so a
client can skip parsing the header. Artifacts other than the manifest never change once
written, so they are cacheable.

Only regular files inside the run directory are served (and listed, and bundled): a symlink in
a run directory, wherever it points, is treated as absent.
"""

from __future__ import annotations

import ast
import mimetypes
import re
from collections.abc import Iterator

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, StreamingResponse

from stepscope.api.deps import ServicesDep
from stepscope.api.deps import job_record as _record
from stepscope.api.errors import ApiError, responses
from stepscope.store import MANIFEST, NotFound, RunDir, safe_relpath

router = APIRouter(prefix="/api/jobs", tags=["artifacts"])
IMMUTABLE = "private, max-age=31536000, immutable"
TYPES = {
    ".npy": "application/x-npy",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".gif": "image/gif",
    ".zip": "application/zip",
}


def open_run(services, job_id: str, require_manifest: bool = True) -> RunDir:
    _record(services, job_id)
    try:
        return services.store.open(job_id, require_manifest=require_manifest)
    except NotFound:
        raise ApiError(404, f"job {job_id} has no run directory yet (it has not started)", "job_id") from None


def regular_files(run: RunDir) -> Iterator[str]:
    """The run's files (relative paths) that may be served: regular files, no symlinks (RunDir.files)."""
    return run.files()


def require_regular_file(run: RunDir, rel: str) -> None:
    if not run.is_regular_file(rel):
        raise ApiError(404, f"no artifact {rel}", "path")


_DTYPE = re.compile(r"^[<>|=]?[A-Za-z][0-9]{0,3}$")


def npy_header(head: bytes) -> tuple[str, list[int]] | None:
    """(dtype, shape) from the first bytes of a .npy file (format 1.0 / 2.0); None for anything else (a file that
    only looks like one gets no X-Dtype/X-Shape, never an error)."""
    if not head.startswith(b"\x93NUMPY") or len(head) < 12:
        return None
    major = head[6]
    if major == 1:
        length, start = int.from_bytes(head[8:10], "little"), 10
    else:
        length, start = int.from_bytes(head[8:12], "little"), 12
    try:
        meta = ast.literal_eval(head[start : start + length].decode("latin1"))
        descr, shape = meta["descr"], list(meta["shape"])
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
        return None
    if not isinstance(descr, str) or not _DTYPE.match(descr):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        return None
    return descr, shape


def stream_file(run: RunDir, rel: str, media: str, headers: dict) -> StreamingResponse:
    """The file streamed from one open descriptor: a manifest replaced while it is sent is sent as it was opened
    (a FileResponse would announce one size and read another file)."""
    handle = run.open_file(rel)

    def chunks():
        with handle:
            while block := handle.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type=media, headers=headers)


@router.get("/{job_id}/manifest", summary="The run's manifest.json (updated as the run goes)", responses=responses(404))
def manifest(job_id: str, services: ServicesDep) -> Response:
    run = open_run(services, job_id)
    require_regular_file(run, MANIFEST)
    # Streamed, never read whole into memory: a manifest's size is the writer's, not the API's.
    return stream_file(run, MANIFEST, "application/json", {"Cache-Control": "no-cache"})


@router.get("/{job_id}/files", summary="Every file of the run directory", responses=responses(404))
def files(job_id: str, services: ServicesDep) -> dict:
    run = open_run(services, job_id, require_manifest=False)
    return {"files": list(regular_files(run))}


@router.api_route(
    "/{job_id}/artifacts/{path:path}",
    methods=["GET", "HEAD"],
    summary="One artifact of the run (PNG/JPEG previews, .npy arrays, MP4, JSON)",
    responses={
        200: {
            "content": {
                t: {}
                for t in (
                    "application/x-npy",
                    "image/png",
                    "image/jpeg",
                    "video/mp4",
                    "application/json",
                    "image/gif",
                    "application/zip",
                    "application/octet-stream",
                )
            }
        },
        **responses(400, 404),
    },
)
def artifact(job_id: str, path: str, services: ServicesDep) -> Response:
    rel = safe_relpath(path)
    run = open_run(services, job_id, require_manifest=False)
    require_regular_file(run, rel)
    suffix = "." + rel.rsplit(".", 1)[-1].lower() if "." in rel else ""
    media = TYPES.get(suffix) or mimetypes.guess_type(rel)[0] or "application/octet-stream"
    headers = {"Cache-Control": "no-cache" if rel == MANIFEST else IMMUTABLE}
    if suffix == ".npy":
        with run.open_file(rel) as f:
            parsed = npy_header(f.read(4096))
        if parsed:
            headers["X-Dtype"], shape = parsed[0], parsed[1]
            headers["X-Shape"] = ",".join(str(s) for s in shape)
            headers["Access-Control-Expose-Headers"] = "X-Dtype, X-Shape"
    local = run.local_path(rel)
    if local is not None and rel != MANIFEST:  # artifacts never change: served as files (with ranges)
        return FileResponse(local, media_type=media, headers=headers)
    return stream_file(run, rel, media, headers)
