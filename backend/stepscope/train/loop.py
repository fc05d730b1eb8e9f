"""One optimisation loop for both stages: AdamW, warm-up / flat / decay schedule, bf16 on CUDA, resumable.

A stage runs `total` optimiser steps, over as many processes as it takes: the loop stops at a
deadline or a step (`Stop`), hands its state to `save` at least every `save_every` seconds and when
it stops, and a later process passes that state back as `resume` and goes on from the same step,
schedule and optimiser moments. The stage owns the rest of the checkpoint (weights, random
generator), so N resumed processes train what one uninterrupted process trains
(tests/train/test_resume.py checks it on a CPU).

With a time budget (`seconds`) the step count is instead fixed once, after
`TIMING_SKIP + TIMING_STEPS` steps, from the measured time per step, and written to the record;
passing that count back as `max_steps` (and no budget) gives the same schedule again. A resumed
stage with a time budget finishes its schedule within it: the count is fixed the same way, no
earlier than the decay allows (`earliest_resumed_total`). On CPU
everything runs in float32.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

TIMING_SKIP = 5  # first steps left out of the per-step time (allocator and kernel warm-up)
TIMING_STEPS = 30  # steps timed before the step count is fixed
SAVE_EVERY_SECONDS = 60.0  # a checkpoint at least this often, so a killed call loses at most this much


@dataclass
class LoopRecord:
    """What a stage did over all its processes: steps planned and run, losses, time, one entry per process."""

    planned_steps: int
    steps: int = 0
    seconds: float = 0.0
    seconds_per_step: float | None = None  # of the latest process (after its warm-up steps)
    losses: list[tuple[int, float]] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)  # per process: first and last step, seconds, why it stopped
    finished: bool = False

    def to_json(self) -> dict:
        return {
            "planned_steps": self.planned_steps,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "seconds_per_step": self.seconds_per_step,
            "losses": [list(pair) for pair in self.losses],
            "calls": self.calls,
            "finished": self.finished,
        }

    @classmethod
    def from_json(cls, data: dict) -> LoopRecord:
        return cls(
            planned_steps=data["planned_steps"],
            steps=data["steps"],
            seconds=data["seconds"],
            seconds_per_step=data["seconds_per_step"],
            losses=[(int(s), float(v)) for s, v in data["losses"]],
            calls=list(data["calls"]),
            finished=data["finished"],
        )


@dataclass(frozen=True)
class Stop:
    """When this process stops early: at a monotonic-clock deadline, and/or before a given step."""

    deadline: float | None = None  # time.monotonic() value
    at_step: int | None = None

    def reached(self, step: int) -> str | None:
        if self.at_step is not None and step >= self.at_step:
            return f"stopped at step {step}"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "out of time"
        return None


def decay_start(warmup: int, total: int, decay_fraction: float) -> int:
    """The first step of the decay: the last `decay_fraction` of the steps after warm-up decay."""
    return total - round(decay_fraction * max(0, total - warmup))


def learning_rate(step: int, base: float, warmup: int, total: int, decay_fraction: float = 1.0) -> float:
    """Linear warm-up over `warmup` steps, flat, then a cosine to zero at `total` over the decay's steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    start = decay_start(warmup, total, decay_fraction)
    if step < start:
        return base
    progress = (step - start) / max(1, total - start)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def resumed_total(step: int, saved_total: int, requested: int, warmup: int, decay_fraction: float) -> int:
    """The step count a resumed stage runs to: a new `requested` count only while the schedule is still flat under
    both plans (before the decay, the schedule does not depend on the count), else an error saying why."""
    if requested == saved_total:
        return saved_total
    if step >= decay_start(warmup, saved_total, decay_fraction) or step >= decay_start(
        warmup, requested, decay_fraction
    ):
        raise ValueError(
            f"steps: the checkpoint at step {step} plans {saved_total} steps and its learning rate is already"
            f" decaying (or would be under {requested}); resume with steps={saved_total}"
        )
    return requested


def earliest_resumed_total(step: int, wanted: int, saved_total: int, warmup: int, decay_fraction: float) -> int:
    """A resumed stage's new step count fixed from timing at `step`: `wanted`, or the first count whose decay starts
    no earlier than `step` (the schedule may not jump back), or the saved count when every decay covers all steps."""
    if decay_fraction >= 1.0:
        return saved_total
    if decay_start(warmup, wanted, decay_fraction) >= step:
        return wanted
    total = math.ceil((step - decay_fraction * warmup) / (1 - decay_fraction))
    while decay_start(warmup, total, decay_fraction) < step:  # rounding
        total += 1
    return total


def autocast_for(device: torch.device):
    """bfloat16 autocast on CUDA; nothing (float32) elsewhere: no half-precision compute on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_loop(
    params: list[torch.nn.Parameter],
    loss_fn: Callable[[int], torch.Tensor],
    *,
    device: torch.device,
    lr: float,
    warmup: int,
    max_steps: int,
    seconds: float | None,
    decay_fraction: float = 1.0,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    after_step: Callable[[int], None] | None = None,
    log_every: int = 50,
    log: Callable[[str], None] = print,
    name: str = "stage",
    resume: dict | None = None,
    stop: Stop | None = None,
    save: Callable[[dict], None] | None = None,
    save_every: float = SAVE_EVERY_SECONDS,
) -> LoopRecord:
    """Minimise `loss_fn(step)` over `params` until `max_steps` (or the time budget's count), or until `stop`.

    `resume` is a state `save` received earlier ({"step", "total", "optimizer", "record"}); `save(state)` is
    called at least every `save_every` seconds and when the loop ends, with the state a later call resumes from.
    """
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    stop = stop or Stop()
    if resume is None:
        step, total = 0, max_steps
        record = LoopRecord(planned_steps=total)
    else:
        optimizer.load_state_dict(resume["optimizer"])
        step = int(resume["step"])
        record = LoopRecord.from_json(resume["record"])
        total = resumed_total(step, int(resume["total"]), max_steps, warmup, decay_fraction)
        if total != record.planned_steps:
            log(f"{name}: resumed at step {step}; the plan changes from {record.planned_steps} to {total} steps")
        record.planned_steps = total
    # With a time budget the count is fixed from timing: on a fresh start, or on a resume ("finish within this
    # process"), where the new count must still leave the decay after the step it is fixed at.
    plan_from_timing = seconds is not None
    first_step = step
    started = time.perf_counter()
    last_save = time.monotonic()
    timing_start = None
    timed_from = first_step + TIMING_SKIP

    def state() -> dict:
        record.steps = step
        return {"step": step, "total": total, "optimizer": optimizer.state_dict(), "record": record.to_json()}

    stopped = None
    while step < total:
        stopped = stop.reached(step) if step > first_step else None
        if stopped:
            break
        if step == timed_from:
            _sync(device)
            timing_start = time.perf_counter()
        if plan_from_timing and step == timed_from + TIMING_STEPS:
            _sync(device)
            per_step = (time.perf_counter() - timing_start) / (step - timed_from)
            record.seconds_per_step = per_step
            remaining = seconds - (time.perf_counter() - started)
            total = max(step + 1, min(max_steps, step + int(remaining / per_step)))
            if resume is not None:
                total = earliest_resumed_total(step, total, record.planned_steps, warmup, decay_fraction)
            record.planned_steps = total
            log(f"{name}: {per_step * 1000:.1f} ms/step, {total} steps fit {seconds:.0f} s")
            if total < 2 * warmup:
                log(f"{name}: warning: {total} steps is under twice the {warmup}-step warm-up")
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, lr, warmup, total, decay_fraction)
        with autocast_for(device):
            loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        if after_step is not None:
            after_step(step)
        if step % log_every == 0 or step == total - 1:
            value = float(loss.detach())
            record.losses.append((step, value))
            log(f"{name} step {step}/{total} loss {value:.5f} lr {optimizer.param_groups[0]['lr']:.2e}")
        step += 1
        if save is not None and time.monotonic() - last_save >= save_every and step < total:
            _sync(device)
            save(state())
            last_save = time.monotonic()
    _sync(device)
    elapsed = time.perf_counter() - started
    if timing_start is not None and step > timed_from:
        record.seconds_per_step = (time.perf_counter() - timing_start) / (step - timed_from)
    record.seconds += elapsed
    record.finished = step >= total
    record.calls.append(
        {
            "from_step": first_step,
            "to_step": step,
            "seconds": round(elapsed, 2),
            "seconds_per_step": record.seconds_per_step,
            "ended": "finished" if record.finished else stopped,
        }
    )
    if save is not None:
        save(state())
    record.steps = step
    return record
