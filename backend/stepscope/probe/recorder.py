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

from stepscope import events
from stepscope import run_format as rf
from stepscope.preview import LinearPreview, frame_strip
from stepscope.probe import metrics
from stepscope.probe.trajectory import StepCapture, StepSink, TrajectoryResult
from stepscope.run_format import ManifestWriter
from stepscope.store import RunDir, encode_mp4
from stepscope.vae import decode_step_latents

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
    # Held for each decode: an image-to-video pipeline's `vae.encode` takes it too (Experiment), since
    # AutoencoderKLWan keeps its causal frame cache on the module and two calls at once corrupt both.
    lock: threading.Lock = field(default_factory=threading.Lock)

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
                with torch.cuda.stream(self.stream), self.lock:
                    self.stream.wait_event(ready)
                    latents.record_stream(self.stream)
                    frames, dtype = decode_step_latents(step_vae, self.vae, latents[:1])
            else:
                with self.lock:
                    frames, dtype = decode_step_latents(step_vae, self.vae, latents[:1])
            fields = {**event_fields, **store_decoded(self.run, rel_dir, frames[0]), "dtype": dtype}
            fields["seconds"] = round(time.perf_counter() - started, 4)
            if on_stored is not None:
                on_stored(fields)
            self.emit(events.decode_event(**fields))

        self.queue.submit(job)


def store_decoded(run: RunDir, rel_dir: str, frames: np.ndarray) -> dict:
    """Store decoded frames (T, H, W, 3) as JPEGs plus an MP4 under `rel_dir`."""
    # JPEG encoding and ffmpeg both run outside the GIL: encode the video and the frames at once.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        video = pool.submit(lambda: run.write_bytes(rf.video_path(rel_dir), encode_mp4(frames)))
        list(pool.map(lambda i: run.write_image(rf.frame_path(rel_dir, i), frames[i]), range(len(frames))))
        video.result()
    return {"dir": rel_dir, "frames": len(frames), "video": rf.video_path(rel_dir)}


@dataclass
class RunOutputs:
    """What every trajectory of one run writes through: the run directory and its manifest,
    the writer and decoder threads, the preview map and what the probes store."""

    run: RunDir
    manifest: ManifestWriter
    writer: BackgroundQueue
    decoder: Decoder
    preview: LinearPreview
    token_grid: tuple[int, int, int]
    store_x0: bool
    decode_steps: set[int]
    emit: Emit

    def drain(self) -> None:
        """Wait for every stored artifact and decode; re-raise the first error of either thread."""
        self.writer.drain()
        self.decoder.queue.drain()

    def close(self) -> None:
        self.writer.close()
        self.decoder.queue.close()


class TrajectoryRecorder(StepSink):
    """Stores one trajectory's steps (preview, x̂₀, layer norms), announces each one, and at the
    end its final latents, output video and convergence."""

    def __init__(self, out: RunOutputs, name: str, *, steps: int, keep_norms: bool, progress: Callable[[int], dict]):
        self.out = out
        self.name = name
        self.keep_norms = keep_norms  # for the layer-norm comparison with the baseline
        self.progress = progress
        # The last step's x̂₀ is usually the final latent itself: its decode waits for the final
        # one and is shared with it when the two are equal (see `_decode_final`).
        self.deferred_decode_step = steps - 1 if steps - 1 in out.decode_steps else None
        self.deferred_x0: torch.Tensor | None = None
        self.kept_x0: dict[int, np.ndarray] = {}  # member 0's x̂₀ per captured step, for metrics
        self.kept_norms: dict[int, dict[str, np.ndarray]] = {}
        self.latencies: list[float] = []

    def on_step(self, capture: StepCapture) -> None:
        tensors = {"preview": self.out.preview.apply(capture.x0), "x0": capture.x0}
        if capture.x0_cond is not None:
            tensors["x0_cond"] = capture.x0_cond
        for pass_name, norms in capture.layer_norms.items():
            tensors[f"norms/{pass_name}"] = norms
        copy = HostCopy.start(tensors)
        if capture.index == self.deferred_decode_step:
            self.deferred_x0 = capture.x0
        elif capture.index in self.out.decode_steps:
            self.out.decoder.submit(
                rf.decode_dir(self.name, capture.index),
                capture.x0,
                {"trajectory": self.name, "step": capture.index},
                on_stored=self.record_decode,
            )
        self.out.writer.submit(lambda: self._store(capture, copy))

    def _store(self, capture: StepCapture, copy: HostCopy) -> None:
        arrays = copy.wait()
        copied = time.perf_counter()
        run, step = self.out.run, capture.index
        artifacts = {}
        preview = arrays["preview"]  # (B, F, H, W, 3): one row of frames per member
        strip = np.concatenate([frame_strip(member) for member in preview], axis=0)
        artifacts["preview"] = run.write_image(rf.preview_path(self.name, step), strip)
        x0 = arrays["x0"]
        self.kept_x0[step] = x0[0].astype(np.float32, copy=True)
        if self.out.store_x0:
            artifacts["x0"] = run.write_array(rf.x0_path(self.name, step), x0)
        if "x0_cond" in arrays:  # asked for explicitly (probes.cond_x0), so stored even without x0_arrays
            artifacts["x0_cond"] = run.write_array(rf.x0_cond_path(self.name, step), arrays["x0_cond"])
        norms_by_pass = {}
        for key, norms in arrays.items():
            if key.startswith("norms/"):
                pass_name = key.split("/", 1)[1]
                grid = norms.reshape(norms.shape[0], norms.shape[1], *self.out.token_grid)
                artifacts[rf.layer_norms_key(pass_name)] = run.write_array(
                    rf.layer_norms_path(self.name, pass_name, step), grid
                )
                norms_by_pass[pass_name] = norms[0]
        if self.keep_norms and norms_by_pass:
            self.kept_norms[step] = norms_by_pass
        stored = time.perf_counter()
        # On CUDA the writer wakes when the copy (queued right after the forward) completes,
        # so `copied` is when the step's results existed; on the CPU that is `ended`.
        forward_done = copied if copy.event is not None else capture.ended
        record = rf.StepRecord(
            index=step,
            t=capture.timestep,
            sigma=capture.sigma,
            expert=capture.expert,
            artifacts=artifacts,
            timings=rf.StepTimings(
                step_seconds=round(capture.ended - capture.started, 6),
                store_seconds=round(stored - copied, 6),
                forward_to_stored_seconds=round(stored - forward_done, 6),
            ),
        )
        self.out.manifest.add_step(self.name, record)
        self.out.emit(events.step_event(self.name, record.model_dump(mode="json"), self.progress(step)))
        self.latencies.append(time.perf_counter() - forward_done)

    def finish(self, result: TrajectoryResult, loop_seconds: float, decode_final: bool) -> rf.TrajectoryResult:
        """Store the final latents, decode them (if asked) and record the trajectory as finished."""
        run = self.out.run
        final = rf.FinalOutput(
            latents=run.write_array(rf.final_latents_path(self.name), result.final_latents.float().cpu().numpy())
        )
        self._decode_final(result.final_latents, decode_final)
        if decode_final:
            final.video = rf.video_path(rf.final_dir(self.name))
            final.frames_dir = rf.final_dir(self.name)
        self.out.writer.drain()  # every step's x̂₀ is kept before the convergence is computed
        steps = sorted(self.kept_x0)
        distances = metrics.convergence([self.kept_x0[s] for s in steps])
        convergence = rf.Convergence(
            file=run.write_array(rf.convergence_path(self.name), distances),
            steps=steps,
            commitment_step=metrics.commitment_step(steps, distances),
            threshold=metrics.COMMIT_THRESHOLD,
        )
        summary = rf.TrajectoryResult(
            timesteps=result.timesteps,
            sigmas=result.sigmas,
            experts=result.experts,
            step_seconds=[round(s, 6) for s in result.step_seconds],
            loop_seconds=round(loop_seconds, 4),
            final=final,
            convergence=convergence,
            forward_to_event_seconds=rf.Percentiles(
                p50=_percentile(self.latencies, 50), p95=_percentile(self.latencies, 95)
            ),
        )
        self.out.manifest.finish_trajectory(self.name, summary)
        return summary

    def _decode_final(self, final_latents: torch.Tensor, decode_final: bool) -> None:
        """Decode the final latents (if asked) and the deferred last step, once when equal."""
        last, x0 = self.deferred_decode_step, self.deferred_x0
        shared = decode_final and x0 is not None and torch.equal(x0, final_latents)

        def record(fields: dict) -> None:
            self.record_decode(fields)
            if shared:
                self.record_decode({**fields, "step": last})
                self.out.emit(events.decode_event(**{**fields, "step": last}))

        if decode_final:
            self.out.decoder.submit(
                rf.final_dir(self.name), final_latents, {"trajectory": self.name, "step": "final"}, record, final=True
            )
        if x0 is not None and not shared:
            self.out.decoder.submit(
                rf.decode_dir(self.name, last), x0, {"trajectory": self.name, "step": last}, self.record_decode
            )
        self.deferred_x0 = None

    def record_decode(self, fields: dict) -> None:
        entry = rf.DecodeEntry(**{key: fields[key] for key in ("step", "dir", "frames", "video", "dtype")})
        self.out.manifest.add_decode(self.name, entry)


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 6) if values else None
