"""One optimisation loop for both stages: AdamW, linear warm-up then cosine decay, optional time budget, bf16 on CUDA.

With a time budget the step count is fixed once, after `TIMING_SKIP + TIMING_STEPS` steps, from
the measured time per step (warm-up steps do not depend on the total), and written to the run's
record; passing that count back as `steps` (and no budget) gives the same schedule again when the
warm-up is at least that many steps (both full-config stages: 100 and 300). On CPU everything runs
in float32.
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


@dataclass
class LoopRecord:
    """What a stage did: steps planned and run, losses every `log_every` steps, time per step."""

    planned_steps: int
    steps: int = 0
    seconds: float = 0.0
    seconds_per_step: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "planned_steps": self.planned_steps,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "seconds_per_step": self.seconds_per_step,
            "losses": self.losses,
        }


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from `base` to zero at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


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
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    after_step: Callable[[int], None] | None = None,
    log_every: int = 50,
    log: Callable[[str], None] = print,
    name: str = "stage",
) -> LoopRecord:
    """Minimise `loss_fn(step)` over `params`; stop at `max_steps` or when the time budget says so."""
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    total = max_steps
    record = LoopRecord(planned_steps=total)
    started = time.perf_counter()
    timing_start = None
    step = 0
    while step < total:
        if step == TIMING_SKIP:
            _sync(device)
            timing_start = time.perf_counter()
        if seconds is not None and step == TIMING_SKIP + TIMING_STEPS:
            _sync(device)
            per_step = (time.perf_counter() - timing_start) / (step - TIMING_SKIP)
            record.seconds_per_step = per_step
            remaining = seconds - (time.perf_counter() - started)
            total = max(step + 1, min(max_steps, step + int(remaining / per_step)))
            record.planned_steps = total
            log(f"{name}: {per_step * 1000:.1f} ms/step, {total} steps fit {seconds:.0f} s")
            if total < 2 * warmup:
                log(f"{name}: warning: {total} steps is under twice the {warmup}-step warm-up")
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, lr, warmup, total)
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
    _sync(device)
    record.steps = step
    record.seconds = time.perf_counter() - started
    if record.seconds_per_step is None and step > TIMING_SKIP and timing_start is not None:
        record.seconds_per_step = (time.perf_counter() - timing_start) / (step - TIMING_SKIP)
    return record
