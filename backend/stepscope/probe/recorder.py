"""From captured steps to stored artifacts and events, off the denoising loop's critical path.

The loop thread only starts work on the device: the x̂₀ preview (a tiny matmul) and
asynchronous device→host copies into pinned memory. A writer thread waits for the copies,
encodes and stores the artifacts, updates the manifest and only then announces the step, so
an event never names an artifact that is not stored yet. Full VAE decodes run on their own
thread (and CUDA stream) in the order they were asked for.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stepscope.preview import LinearPreview, decode_step_latents, frame_strip
from stepscope.probe.trajectory import StepCapture, StepSink
from stepscope.run import step_name, trajectory_dir
from stepscope.store import RunDir, encode_mp4

Emit = Callable[[dict], None]


class BackgroundQueue:
    """One thread running submitted jobs in order; the first error is re-raised on the caller."""

    def __init__(self, name: str):
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except BaseException as exc:  # surfaced by check()/drain() on the loop thread
                self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, job: Callable[[], None]) -> None:
        self.check()
        self._queue.put(job)

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def drain(self) -> None:
        self._queue.join()
        self.check()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


@dataclass
class HostCopy:
    """Tensors copied to the host asynchronously; `wait()` returns them once the copy is done."""

    tensors: dict[str, torch.Tensor]
    event: Any = None  # torch.cuda.Event on CUDA, None on CPU (copies are synchronous there)

    @classmethod
    def start(cls, tensors: dict[str, torch.Tensor]) -> HostCopy:
        first = next(iter(tensors.values()), None)
        if first is None or first.device.type != "cuda":
            return cls({k: v.detach() for k, v in tensors.items()})
        host = {}
        for key, t in tensors.items():
            host[key] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host[key].copy_(t, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return cls(host, event)

    def wait(self) -> dict[str, np.ndarray]:
        if self.event is not None:
            self.event.synchronize()
        return {k: v.numpy() for k, v in self.tensors.items()}


class RunManifest:
    """The manifest of a run being written: one dict, updated under a lock, stored atomically."""

    def __init__(self, run: RunDir, manifest: dict):
        self.run = run
        self.data = manifest
        self._lock = threading.Lock()

    def update(self, change: Callable[[dict], None]) -> None:
        with self._lock:
            change(self.data)
            self.run.write_manifest(self.data)


@dataclass
class Decoder:
    """Full VAE decodes of chosen steps, on a background thread and (on CUDA) a side stream.

    `vae` decodes the final latents (as the plain pipeline does); `step_vae`, when given (e.g.
    a bfloat16 copy, see LoadedModel.step_vae), decodes the steps along the way.
    """

    vae: Any
    run: RunDir
    emit: Emit
    step_vae: Any = None
    queue: BackgroundQueue = field(default_factory=lambda: BackgroundQueue("stepscope-decode"))
    stream: Any = None

    def __post_init__(self) -> None:
        device = next(self.vae.parameters()).device
        if device.type == "cuda":
            self.stream = torch.cuda.Stream(device=device)

    def submit(
        self, rel_dir: str, latents: torch.Tensor, event_fields: dict, on_stored=None, final: bool = False
    ) -> None:
        step_vae = None if final else self.step_vae
        ready = None
        if latents.is_cuda:
            ready = torch.cuda.Event()
            ready.record()

        def job() -> None:
            started = time.perf_counter()
            if self.stream is not None:
                with torch.cuda.stream(self.stream):
                    self.stream.wait_event(ready)
                    latents.record_stream(self.stream)
                    frames, dtype = decode_step_latents(step_vae, self.vae, latents[:1])
            else:
                frames, dtype = decode_step_latents(step_vae, self.vae, latents[:1])
            fields = {**event_fields, **store_decoded(self.run, rel_dir, frames[0]), "dtype": dtype}
            fields["seconds"] = round(time.perf_counter() - started, 4)
            if on_stored is not None:
                on_stored(fields)
            self.emit({"type": "decode", **fields})

        self.queue.submit(job)


def store_decoded(run: RunDir, rel_dir: str, frames: np.ndarray) -> dict:
    """Store decoded frames (T, H, W, 3) as JPEGs plus an MP4 under `rel_dir`."""
    # JPEG encoding and ffmpeg both run outside the GIL: encode the video and the frames at once.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        video = pool.submit(lambda: run.write_bytes(f"{rel_dir}/video.mp4", encode_mp4(frames)))
        list(pool.map(lambda i: run.write_image(f"{rel_dir}/frame_{i:03d}.jpg", frames[i]), range(len(frames))))
        video.result()
    return {"dir": rel_dir, "frames": len(frames), "video": f"{rel_dir}/video.mp4"}


class TrajectoryRecorder(StepSink):
    """Stores one trajectory's steps (preview, x̂₀, layer norms) and announces each one."""

    def __init__(
        self,
        *,
        name: str,
        manifest: RunManifest,
        writer: BackgroundQueue,
        decoder: Decoder,
        preview: LinearPreview,
        token_grid: tuple[int, int, int],
        store_x0: bool,
        keep_x0: bool,
        keep_norms: bool,
        decode_steps: set[int],
        deferred_decode_step: int | None,
        emit: Emit,
        progress: Callable[[int], dict],
    ):
        self.name = name
        self.manifest = manifest
        self.run = manifest.run
        self.writer = writer
        self.decoder = decoder
        self.preview = preview
        self.token_grid = token_grid
        self.store_x0 = store_x0
        self.keep_x0 = keep_x0
        self.keep_norms = keep_norms
        self.decode_steps = decode_steps
        # The last step's x̂₀ is usually the final latent itself: its decode waits for the final
        # one and is shared with it when the two are equal (see `finish_decodes`).
        self.deferred_decode_step = deferred_decode_step
        self.deferred_x0: torch.Tensor | None = None
        self.emit = emit
        self.progress = progress
        self.kept_x0: dict[int, np.ndarray] = {}  # member 0's x̂₀ per captured step, for metrics
        self.kept_norms: dict[int, dict[str, np.ndarray]] = {}
        self.latencies: list[float] = []

    def on_step(self, capture: StepCapture) -> None:
        tensors = {"preview": self.preview.apply(capture.x0)}
        if self.store_x0 or self.keep_x0:
            tensors["x0"] = capture.x0
        for pass_name, norms in capture.layer_norms.items():
            tensors[f"norms/{pass_name}"] = norms
        copy = HostCopy.start(tensors)
        base = trajectory_dir(self.name)
        if capture.index == self.deferred_decode_step:
            self.deferred_x0 = capture.x0
        elif capture.index in self.decode_steps:
            self.decoder.submit(
                f"{base}/decode/{step_name(capture.index)}",
                capture.x0,
                {"trajectory": self.name, "step": capture.index},
                on_stored=self.record_decode,
            )
        self.writer.submit(lambda: self._store(capture, copy))

    def _store(self, capture: StepCapture, copy: HostCopy) -> None:
        arrays = copy.wait()
        copied = time.perf_counter()
        base = trajectory_dir(self.name)
        name = step_name(capture.index)
        artifacts = {}
        preview = arrays["preview"]  # (B, F, H, W, 3): one row of frames per member
        strip = np.concatenate([frame_strip(member) for member in preview], axis=0)
        artifacts["preview"] = self.run.write_image(f"{base}/preview/{name}.png", strip)
        if "x0" in arrays:
            x0 = arrays["x0"]
            if self.keep_x0:
                self.kept_x0[capture.index] = x0[0].astype(np.float32, copy=True)
            if self.store_x0:
                artifacts["x0"] = self.run.write_array(f"{base}/x0/{name}.npy", x0)
        norms_by_pass = {}
        for key, norms in arrays.items():
            if key.startswith("norms/"):
                pass_name = key.split("/", 1)[1]
                grid = norms.reshape(norms.shape[0], norms.shape[1], *self.token_grid)
                artifacts[f"layer_norms.{pass_name}"] = self.run.write_array(
                    f"{base}/layer_norms/{pass_name}/{name}.npy", grid
                )
                norms_by_pass[pass_name] = norms[0]
        if self.keep_norms and norms_by_pass:
            self.kept_norms[capture.index] = norms_by_pass
        stored = time.perf_counter()
        # On CUDA the writer wakes when the copy (queued right after the forward) completes,
        # so `copied` is when the step's results existed; on the CPU that is `ended`.
        forward_done = copied if copy.event is not None else capture.ended
        record = {
            "index": capture.index,
            "t": capture.timestep,
            "sigma": capture.sigma,
            "expert": capture.expert,
            "artifacts": artifacts,
            "timings": {
                "step_seconds": round(capture.ended - capture.started, 6),
                "store_seconds": round(stored - copied, 6),
                "forward_to_stored_seconds": round(stored - forward_done, 6),
            },
        }
        self.manifest.update(lambda m: m["trajectories"][self.name]["steps"].append(record))
        self.emit({"type": "step", "trajectory": self.name, **record, "progress": self.progress(capture.index)})
        self.latencies.append(time.perf_counter() - forward_done)

    def finish_decodes(self, final_latents: torch.Tensor, decode_final: bool) -> None:
        """Decode the final latents (if asked) and the deferred last step, once when equal."""
        base = trajectory_dir(self.name)
        last, x0 = self.deferred_decode_step, self.deferred_x0
        shared = decode_final and x0 is not None and torch.equal(x0, final_latents)

        def record(fields: dict) -> None:
            self.record_decode(fields)
            if shared:
                self.record_decode({**fields, "step": last})
                self.emit({"type": "decode", **fields, "step": last})

        if decode_final:
            self.decoder.submit(
                f"{base}/final", final_latents, {"trajectory": self.name, "step": "final"}, record, final=True
            )
        if x0 is not None and not shared:
            self.decoder.submit(
                f"{base}/decode/{step_name(last)}", x0, {"trajectory": self.name, "step": last}, self.record_decode
            )
        self.deferred_x0 = None

    def record_decode(self, fields: dict) -> None:
        entry = {key: fields[key] for key in ("step", "dir", "frames", "video", "dtype")}
        self.manifest.update(lambda m: m["trajectories"][self.name]["decodes"].append(entry))
