"""Exports of a run: the whole run directory as a zip, and the trajectory as an animated grid.

The grid animation has one frame per captured step: each frame is that step's preview strip
(all latent frames side by side, ensemble members stacked), one row per chosen trajectory,
upscaled without smoothing and captioned with the step, σ, t and expert. Both are made on request
from the stored previews, so they also work while the run is still going (the steps so far).

Exports run in bounded memory whatever the run's length: frames are drawn one at a time and
streamed out as they are encoded (GIF frame by frame with Pillow's per-frame encoder, each with
its own palette; MP4 through ffmpeg's pipe into a temporary file that is streamed and removed),
so the API holds about one frame (at most MAX_SIDE² pixels), never the whole animation.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from PIL import GifImagePlugin, Image, ImageDraw, ImageFont

from stepscope.api.deps import ServicesDep, typed_manifest
from stepscope.api.errors import ApiError, responses
from stepscope.api.routes.artifacts import open_run, regular_files
from stepscope.run_format import Manifest
from stepscope.store import NotFound, RunDir

router = APIRouter(prefix="/api/jobs", tags=["exports"])

MAX_SIDE = 4096  # pixels of one animation frame, either side
MIN_FPS = 0.01  # GIF stores a frame's delay in 1/100 s in 16 bits: at most 655 s a frame
AUTO_WIDTH = 640  # scale=auto upscales small previews to at least this width
CAPTION_H = 18
LABEL_W = 96  # trajectory names left of the rows when there are several
STORED = {".png", ".jpg", ".jpeg", ".mp4", ".gif", ".webp"}  # already compressed: store as is
CHUNK = 1 << 20
BACKGROUND = (13, 17, 23)
TEXT = (221, 227, 234)


class _Sink:
    """A write-only buffer that zipfile writes into and the response drains (zip without a temp file)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def zip_stream(run: RunDir, root: str):
    """Yield a zip of every file of `run` under `root/`, file by file (data descriptors, zip64)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for rel in regular_files(run):
            suffix = "." + rel.rsplit(".", 1)[-1].lower() if "." in rel else ""
            info = zipfile.ZipInfo(f"{root}/{rel}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if suffix in STORED else zipfile.ZIP_DEFLATED
            with run.open_file(rel) as src, archive.open(info, "w", force_zip64=True) as dst:
                while block := src.read(CHUNK):
                    dst.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


@router.get(
    "/{job_id}/export/bundle.zip",
    summary="The run directory as a zip (manifest, arrays, previews, decodes, metrics)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}, **responses(400, 404)},
)
def bundle(job_id: str, services: ServicesDep) -> StreamingResponse:
    run = open_run(services, job_id)
    headers = {
        "Content-Disposition": f'attachment; filename="stepscope-{job_id}.zip"',
        "Cache-Control": "no-cache",  # a running job's bundle grows
    }
    return StreamingResponse(zip_stream(run, f"stepscope-{job_id}"), media_type="application/zip", headers=headers)


def parse_trajectories(value: str, manifest: Manifest) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise ApiError(422, "trajectories: name at least one trajectory", "trajectories")
    if len(names) != len(set(names)):
        raise ApiError(422, "trajectories: a trajectory is named twice", "trajectories")
    known = manifest.trajectories
    for name in names:
        if name not in known:
            has = ", ".join(known) or "none yet"
            raise ApiError(422, f"trajectories: no trajectory {name!r} in this run (has: {has})", "trajectories")
    return names


def common_steps(manifest: Manifest, names: list[str]) -> list[int]:
    """Captured steps that every chosen trajectory has a preview for, in order."""
    sets = [{s.index for s in manifest.trajectories[n].steps if "preview" in s.artifacts} for n in names]
    return sorted(set.intersection(*sets)) if sets else []


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _preview(run: RunDir, rel: str) -> Image.Image:
    """A stored preview, opened (header read, pixels not yet) like /artifacts reads it: a regular file of the run; a
    409 naming it if it is missing, not an image, or over MAX_SIDE either side."""
    try:
        image = Image.open(io.BytesIO(run.read_bytes(rel)))
    except NotFound:
        detail = f"job_id: the manifest names a preview {rel} that the run does not hold"
        raise ApiError(409, detail, "job_id") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(409, f"job_id: the preview {rel} is not a readable image ({exc})", "job_id") from None
    if image.width > MAX_SIDE or image.height > MAX_SIDE:  # checked before its pixels are decoded
        raise ApiError(409, f"job_id: the preview {rel} is {image.width}×{image.height}, over {MAX_SIDE}", "job_id")
    return image


def _pixels(run: RunDir, rel: str, size: tuple[int, int]) -> Image.Image:
    """A preview's pixels in RGB; once the animation is streaming no error can be answered any more, so a preview
    that stopped being readable since the check is drawn as an empty strip of the same size."""
    try:
        return _preview(run, rel).convert("RGB")
    except (ApiError, OSError, ValueError, Image.DecompressionBombError):
        return Image.new("RGB", size, BACKGROUND)


def grid_frames(run: RunDir, manifest: Manifest, names: list[str], scale: int | None) -> Iterator[np.ndarray]:
    """One RGB frame per common captured step: the chosen trajectories' strips stacked, upscaled, captioned.

    Checks the request before it yields (raises ApiError at once), then draws each frame as it is asked for."""
    steps = common_steps(manifest, names)
    if not steps:
        raise ApiError(409, "job_id: no step has been captured for these trajectories yet", "job_id")
    records = {n: {s.index: s for s in manifest.trajectories[n].steps} for n in names}
    # Every preview is checked before the first byte is sent (headers only): after it, only a 200 can be given.
    first = [_preview(run, records[n][steps[0]].artifacts["preview"]) for n in names]
    for name in names:
        for step in steps[1:]:
            _preview(run, records[name][step].artifacts["preview"]).close()
    strip_w = max(im.width for im in first)
    rows_h = sum(im.height for im in first)
    if scale is None:
        scale = max(1, min(16, math.ceil(AUTO_WIDTH / strip_w)))
    labels = len(names) > 1
    width = strip_w * scale + (LABEL_W if labels else 0)
    height = rows_h * scale + CAPTION_H
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ApiError(
            422, f"scale: {scale}× makes {width}×{height} pixel frames, over the {MAX_SIDE} pixel limit", "scale"
        )
    font = _font(12)
    total = manifest.spec.get("steps") if isinstance(manifest.spec.get("steps"), int) else steps[-1] + 1
    total = max(total, steps[-1] + 1)
    latent_frames = max(1, manifest.shapes.latent[1] if len(manifest.shapes.latent) > 1 else 1)
    left = LABEL_W if labels else 0

    def draw_frames() -> Iterator[np.ndarray]:
        for step in steps:
            yield draw_frame(step)

    def draw_frame(step: int) -> np.ndarray:
        canvas = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        y = 0
        for name in names:
            shape = first[names.index(name)]
            strip = _pixels(run, records[name][step].artifacts["preview"], shape.size)
            # Rows are as the first step's: a preview of another size is fitted, never allowed to grow the frame.
            strip = strip.resize((shape.width * scale, shape.height * scale), Image.Resampling.NEAREST)
            canvas.paste(strip, (left, y))
            # Separators over the last pixel row/column of a block: between members, trajectories, frames.
            members = max(1, len(manifest.trajectories[name].seeds))
            for m in range(1, members + 1):
                row = y + m * strip.height // members - 1
                draw.line((left if m < members else 0, row, width, row), BACKGROUND)
            if labels:
                draw.text((4, y + 2), name[:14], fill=TEXT, font=font)
            y += strip.height
        for f in range(1, latent_frames):
            x = left + f * (strip_w * scale) // latent_frames - 1
            draw.line((x, 0, x, y - 1), BACKGROUND)
        record = records[names[0]][step]
        caption = f"step {step}/{total - 1}  sigma={record.sigma:.3f}  t={record.t:.0f}  {record.expert}"
        draw.text((4, height - CAPTION_H + 3), caption[:200], fill=TEXT, font=font)
        # A progress bar along the bottom also keeps consecutive frames distinct (GIF writers merge equal ones).
        bar = round((width - 1) * (step + 1) / max(total, 1))
        draw.rectangle((0, height - 2, bar, height - 1), fill=(94, 200, 255))
        return np.asarray(canvas)

    return draw_frames()


Trajectories = Annotated[
    str, Query(max_length=2000, description="comma-separated trajectories, one row each (default: baseline)")
]
Scale = Annotated[int | None, Query(ge=1, le=16, description="integer upscale of the previews (default: auto)")]
Fps = Annotated[float, Query(ge=MIN_FPS, le=30, description="animation frames (steps) per second, 0.01 to 30")]


def gif_stream(frames: Iterator[np.ndarray], duration_ms: int) -> Iterator[bytes]:
    """An animated GIF (looping), encoded and yielded frame by frame; each frame has its own palette."""
    for index, pixels in enumerate(frames):
        frame = Image.fromarray(pixels).quantize(256)
        if index == 0:
            header, _ = GifImagePlugin.getheader(frame, info={"loop": 0, "duration": duration_ms})
            yield b"".join(header)
        yield b"".join(GifImagePlugin.getdata(frame, duration=duration_ms, include_color_table=True))
    yield b";"  # the GIF trailer


def mp4_stream(frames: Iterator[np.ndarray], fps: int) -> Iterator[bytes]:
    """An H.264 MP4: frames piped to ffmpeg one at a time into a temporary file, then streamed and removed."""
    import imageio.v2 as imageio  # imported on first use: it loads ffmpeg's plugin

    fd, path = tempfile.mkstemp(prefix="stepscope-export-", suffix=".mp4")
    os.close(fd)
    try:
        # "veryfast" encodes about 4x faster than x264's default, at similar size (as store.encode_mp4).
        writer = imageio.get_writer(
            path, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1, ffmpeg_params=["-preset", "veryfast"]
        )
        with writer:
            for pixels in frames:
                h, w = pixels.shape[:2]
                if h % 2 or w % 2:  # H.264 wants even sizes
                    pixels = np.pad(pixels, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                writer.append_data(pixels)
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                yield block
    finally:
        os.unlink(path)


def _grid(job_id: str, services, trajectories: str, scale: int | None) -> tuple[Iterator[np.ndarray], str]:
    run = open_run(services, job_id)
    manifest = typed_manifest(services, run, job_id)
    names = parse_trajectories(trajectories, manifest)
    return grid_frames(run, manifest, names, scale), "-".join(names)


@router.get(
    "/{job_id}/export/grid.gif",
    summary="The trajectory as an animated GIF: one frame per captured step",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}}, **responses(400, 404, 409)},
)
def grid_gif(
    job_id: str, services: ServicesDep, trajectories: Trajectories = "baseline", scale: Scale = None, fps: Fps = 4.0
) -> Response:
    frames, label = _grid(job_id, services, trajectories, scale)
    headers = {"Content-Disposition": f'inline; filename="{job_id[:8]}-{label}.gif"', "Cache-Control": "no-cache"}
    duration_ms = max(20, round(1000 / fps))
    return StreamingResponse(gif_stream(frames, duration_ms), media_type="image/gif", headers=headers)


@router.get(
    "/{job_id}/export/grid.mp4",
    summary="The trajectory as an H.264 MP4: one frame per captured step",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}}}, **responses(400, 404, 409)},
)
def grid_mp4(
    job_id: str, services: ServicesDep, trajectories: Trajectories = "baseline", scale: Scale = None, fps: Fps = 4.0
) -> Response:
    if fps != round(fps):
        raise ApiError(422, f"fps: MP4 needs a whole number of frames per second, got {fps}", "fps")
    frames, label = _grid(job_id, services, trajectories, scale)
    headers = {"Content-Disposition": f'inline; filename="{job_id[:8]}-{label}.mp4"', "Cache-Control": "no-cache"}
    return StreamingResponse(mp4_stream(frames, int(fps)), media_type="video/mp4", headers=headers)
