"""Training runs: the VAE stage and the transformer stage, each resumable across processes, or both in one go.

A stage may need more time than one process has (a lent GPU for 10 minutes): `max_seconds` ends the
process in time with a checkpoint, and the next process passes that checkpoint as `resume` and goes
on at the same step (loop.py, checkpoint.py). Every process also leaves what it has so far in a
loadable form, so each checkpoint can be evaluated.

Output directory <out>:
  vae/                     the VAE (`save_pretrained`) with its latent statistics, after every VAE process
  vae-checkpoint/          the VAE stage's checkpoint
  vae.json                 the VAE stage's record (config, data, losses, one entry per process)
  pipeline/                the WanImageToVideoPipeline that `stepscope.models.load_model(<dir>)` loads,
                           after every transformer process
  transformer-checkpoint/  the transformer stage's checkpoint
  training.json            the transformer stage's record (and the VAE's, when both ran here)
  train_keys.txt           one instance key a line for the transformer's pool (evaluation counts held-out
                           instances that equal a training instance)
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stepscope.models.loading import write_model_settings
from stepscope.tasks.core import get_family
from stepscope.train.build import (
    assemble_pipeline,
    build_transformer_for,
    build_vae_for,
    parameter_counts,
    seeded_components,
    shipped_bytes,
)
from stepscope.train.checkpoint import load_checkpoint, save_checkpoint
from stepscope.train.config import TrainConfig
from stepscope.train.data import (
    TASK_PARTS,
    TRAIN_SEEDS,
    instance_keys,
    render_all,
    task_part,
    to_model_range,
    training_refs,
    worker_count,
)
from stepscope.train.loop import Stop
from stepscope.train.transformer import (
    compiles_blocks,
    encode_pool,
    fixed_batch_loss,
    prompt_embeddings,
    train_transformer,
)
from stepscope.train.vae import finish_vae, reconstruction_error, train_vae

FIXED_BATCH = 8  # instances in the before/after loss comparison
RESERVE_SECONDS = 30.0  # kept at the end of a `max_seconds` process: statistics, the last checkpoint, saving
VAE_CHECKPOINT, TRANSFORMER_CHECKPOINT = "vae-checkpoint", "transformer-checkpoint"
# Fields that may differ between a checkpoint's config and the resuming one: how long, not what is trained.
RESUMABLE_CHANGES = {"steps", "seconds", "compile_blocks"}


@dataclass(frozen=True)
class Budget:
    """How long this process may run: `max_seconds` from `started` (a monotonic time), less a reserve for saving;
    `stop_at_step` stops a stage before that step (tests, and a person who wants a checkpoint at a given step)."""

    started: float
    max_seconds: float | None = None
    reserve: float = RESERVE_SECONDS
    stop_at_step: int | None = None

    def stop(self) -> Stop:
        deadline = None if self.max_seconds is None else self.started + self.max_seconds - self.reserve
        return Stop(deadline=deadline, at_step=self.stop_at_step)


def family_prompts(cfg: TrainConfig) -> list[str]:
    """The prompt of each family, in `cfg.families` order (the family's `prompt`: every instance's)."""
    return [get_family(f).prompt for f in cfg.families]


@dataclass
class Pool:
    """Rendered training videos of each family: training seeds whose tasks belong to the training part."""

    videos: np.ndarray  # (N, T, H, W, 3) uint8
    keys: list[str]
    kept: dict[str, list[int]]  # per family, its rows, in seed order
    dropped: dict[str, int]  # per family, training seeds whose task belongs to the held-out or validation part
    per_family: int  # training seeds looked at per family
    render_seconds: float

    def rows(self, families: tuple[str, ...], count: int) -> list[int]:
        return [i for f in families for i in self.kept[f][:count]]


def render_pool(cfg: TrainConfig, per_family: int, log=print) -> Pool:
    """Render the training-part instances among the first `per_family` training seeds of each family."""
    workers = worker_count(cfg.generator_workers)
    refs = training_refs(cfg.families, cfg.difficulties, per_family)
    keys = instance_keys(refs, cfg.size, cfg.frames, workers)
    kept_refs = [r for r, k in zip(refs, keys, strict=True) if task_part(k) == "training"]
    dropped = {f: per_family - sum(r.family == f for r in kept_refs) for f in cfg.families}
    log(f"training seeds whose task is held-out or validation, not trained on: {dropped}")
    empty = [f for f in cfg.families if dropped[f] == per_family]
    if empty:
        raise ValueError(f"families {empty}: no training-part task among the first {per_family} training seeds")
    started = time.perf_counter()
    videos, kept_keys = render_all(kept_refs, cfg.size, cfg.frames, workers)
    render_seconds = time.perf_counter() - started
    log(f"rendered {len(kept_refs)} training videos in {render_seconds:.1f} s with {workers} worker processes")
    kept: dict[str, list[int]] = {f: [] for f in cfg.families}
    for i, ref in enumerate(kept_refs):
        kept[ref.family].append(i)
    return Pool(videos, kept_keys, kept, dropped, per_family, render_seconds)


def check_resumable(saved: dict, cfg: TrainConfig, stage: str) -> None:
    """Refuse to resume a checkpoint of another stage or of another configuration (a change of length is allowed)."""
    if saved["stage"] != stage:
        raise ValueError(f"resume: the checkpoint is of the {saved['stage']} stage, not the {stage} stage")
    before, now = json.loads(saved["config"]), json.loads(cfg.dumps())  # both as JSON: tuples become lists
    parts = ("vae",) if stage == "vae" else ("vae", "transformer", "text")
    differences = []
    for key in sorted(now):
        if key in ("vae", "transformer", "text"):
            if key not in parts:
                continue
            differences += [
                f"{key}.{name}"
                for name in sorted(now[key])
                if name not in RESUMABLE_CHANGES and before[key].get(name) != now[key][name]
            ]
        elif key not in ("name", "generator_workers") and before.get(key) != now[key]:
            differences.append(key)
    if differences:
        raise ValueError(f"resume: the checkpoint was trained with other settings: {', '.join(differences)}")


def module_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names and float32 bytes): which VAE a transformer was trained on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _saver(cfg: TrainConfig, stage: str, directory: Path, extra: dict):
    def save(state: dict) -> None:
        loop = state["loop"]
        save_checkpoint(
            {
                "stage": stage,
                "config": cfg.dumps(),
                "step": loop["step"],
                "total": loop["total"],
                "extra": extra,
                **state,
            },
            directory,
        )

    return save


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"


def fit_vae(
    cfg: TrainConfig,
    out: Path,
    device: str,
    budget: Budget,
    resume: Path | None = None,
    log=print,
    pool: Pool | None = None,
    init: Path | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Train (or go on training) the VAE; save its checkpoint and the VAE with statistics; return (VAE, record).

    `init` starts a new schedule from the weights of a saved VAE of the same architecture (a fine-tune, e.g. after
    the pictures changed) instead of the seeded initialisation; a resume needs none (its weights are the
    checkpoint's)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        check_resumable(state, cfg, "vae")
        log(f"vae: resuming {resume} at step {state['step']} of {state['total']}")
    pool = pool or render_pool(cfg, cfg.vae.videos_per_family, log)
    rows = pool.rows(cfg.families, cfg.vae.videos_per_family)
    videos = torch.from_numpy(pool.videos[np.array(rows)]).to(dev)
    probe_rows = np.array(rows[:: max(1, len(rows) // FIXED_BATCH)][:FIXED_BATCH])
    probe = to_model_range(pool.videos[probe_rows], dev)
    torch.manual_seed(cfg.seed + 1)
    vae = build_vae_for(cfg).to(dev)
    if init is not None and state is None:
        try:
            vae.load_state_dict(load_vae(Path(init), device).state_dict())
        except RuntimeError as exc:  # another architecture: say so, not a tensor-shape traceback
            raise ValueError(f"init: {init} is not a VAE of this config's sizes: {exc}") from exc
        log(f"vae: starting from the weights of {init}")
    extra = dict(state["extra"]) if state else {"vae_mse_before": reconstruction_error(vae, probe)}
    if state is None:
        extra["init"] = None if init is None else {"from": str(init), "digest": module_digest(vae)}
    extra.update(training_seeds_of_other_parts=pool.dropped, vae_videos=len(rows))
    vae, record = train_vae(
        cfg,
        vae,
        videos,
        dev,
        log=log,
        resume=state,
        stop=budget.stop(),
        save=_saver(cfg, "vae", out / VAE_CHECKPOINT, extra),
    )
    final = finish_vae(cfg, vae, videos)
    del videos
    final.cpu().save_pretrained(out / "vae", safe_serialization=True)
    final.to(dev)
    result = {
        "stage": "vae",
        "config": cfg.to_json(),
        "device": _device_name(dev),
        "torch": torch.__version__,
        "parameters": parameter_counts(cfg)["vae"],
        "videos": len(rows),
        "init": extra.get("init"),
        "training_seeds_of_other_parts": pool.dropped,
        "loop": record.to_json(),
        "finished": record.finished,
        "fixed_batch_mse": {"before": extra["vae_mse_before"], "after": reconstruction_error(final, probe)},
        "latents_mean": list(final.config.latents_mean),
        "latents_std": list(final.config.latents_std),
        "digest": module_digest(final),
    }
    (out / "vae.json").write_text(json.dumps(result, indent=1))
    log(f"vae: step {record.steps} of {record.planned_steps} ({'finished' if record.finished else 'to be resumed'})")
    return final, result


def load_vae(directory: Path, device: str) -> torch.nn.Module:
    """A VAE saved by `fit_vae` (latent statistics in its config), frozen, on `device`."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan.from_pretrained(str(directory)).to(device).eval().requires_grad_(False)


def fit_transformer(
    cfg: TrainConfig,
    out: Path,
    device: str,
    budget: Budget,
    vae: torch.nn.Module,
    resume: Path | None = None,
    log=print,
    pool: Pool | None = None,
) -> dict:
    """Train (or go on training) the transformer on the pool encoded by the frozen `vae`; save its checkpoint and
    the whole pipeline; return the record written to training.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    tc = cfg.transformer
    vae = vae.to(dev).eval().requires_grad_(False)
    vae_digest = module_digest(vae)
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        check_resumable(state, cfg, "transformer")
        if state["extra"]["vae_digest"] != vae_digest:
            raise ValueError(
                f"resume: the checkpoint was trained on VAE {state['extra']['vae_digest']}, not {vae_digest}"
            )
        log(f"transformer: resuming {resume} at step {state['step']} of {state['total']}")
    text_encoder, _, transformer = seeded_components(cfg)
    if state is not None:
        text_encoder.load_state_dict(state["text_encoder"])
    pool = pool or render_pool(cfg, tc.instances_per_family, log)
    pool_rows = {f: pool.kept[f][: tc.instances_per_family] for f in cfg.families}
    rows = np.array([i for f in cfg.families for i in pool_rows[f]])
    started = time.perf_counter()
    x0, condition = encode_pool(vae, pool.videos, rows, dev)
    encode_seconds = time.perf_counter() - started
    family_index = torch.tensor([k for k, f in enumerate(cfg.families) for _ in pool_rows[f]])

    text_encoder = text_encoder.to(dev)
    pipe = assemble_pipeline(cfg, text_encoder, vae, transformer)
    texts = prompt_embeddings(pipe, family_prompts(cfg), dev, tc.text_tokens)
    negative_text = prompt_embeddings(pipe, [""], dev, tc.text_tokens)
    fixed = torch.arange(0, len(x0), max(1, len(x0) // FIXED_BATCH))[:FIXED_BATCH]  # spread over the families
    fixed_args = (x0[fixed].to(dev), condition[fixed].to(dev), texts[family_index[fixed].to(dev)])
    extra = (
        dict(state["extra"]) if state else {"flow_loss_before": fixed_batch_loss(cfg, transformer.to(dev), *fixed_args)}
    )
    extra["vae_digest"] = vae_digest
    save_transformer = _saver(cfg, "transformer", out / TRANSFORMER_CHECKPOINT, extra)

    def save(loop_state: dict) -> None:
        save_transformer({**loop_state, "text_encoder": text_encoder.state_dict()})

    trained, shipped_module, record = train_transformer(
        cfg,
        transformer,
        x0,
        condition,
        family_index,
        texts,
        negative_text,
        dev,
        log=log,
        resume=state,
        stop=budget.stop(),
        save=save,
    )
    del x0, condition
    # A fresh, uncompiled module with the shipped weights: evaluation and saving never see a compiled forward.
    torch.manual_seed(cfg.seed + 2)
    shipped = build_transformer_for(cfg)
    shipped.load_state_dict(shipped_module.state_dict())
    shipped = shipped.to(dev).eval().requires_grad_(False)
    flow_after = None if compiles_blocks(cfg, dev) else fixed_batch_loss(cfg, trained, *fixed_args)
    flow_after_shipped = fixed_batch_loss(cfg, shipped, *fixed_args)
    final = assemble_pipeline(cfg, text_encoder.cpu(), build_vae_copy(cfg, vae), shipped.cpu())
    final.save_pretrained(out / "pipeline", safe_serialization=True)
    write_model_settings(out / "pipeline", text_tokens=tc.text_tokens)
    (out / "train_keys.txt").write_text("".join(pool.keys[i] + "\n" for i in rows.tolist()))
    result = {
        "stage": "transformer",
        "config": cfg.to_json(),
        "device": _device_name(dev),
        "torch": torch.__version__,
        "parameters": parameter_counts(cfg),
        "shipped_bytes_estimate": shipped_bytes(cfg),
        "shipped_bytes_on_disk": sum(p.stat().st_size for p in (out / "pipeline").rglob("*.safetensors")),
        "training_seeds": {"start": TRAIN_SEEDS.start, "per_family": pool.per_family},
        "task_parts_percent": dict(TASK_PARTS),
        "training_seeds_of_other_parts": pool.dropped,
        "pool_per_family": {f: len(r) for f, r in pool_rows.items()},
        "render_seconds": round(pool.render_seconds, 2),
        "encode_seconds": round(encode_seconds, 2),
        "vae_digest": vae_digest,
        "transformer": record.to_json(),
        "finished": record.finished,
        # The same batch, noise and σ before and after training, in float32 (no autocast) on any device.
        "flow_matching_loss": {"before": extra["flow_loss_before"], "after": flow_after, "shipped": flow_after_shipped},
        "text_encoder": "frozen at its seeded random initialisation",
        "latents_mean": list(vae.config.latents_mean),
        "latents_std": list(vae.config.latents_std),
    }
    (out / "training.json").write_text(json.dumps(result, indent=1))
    log(
        f"transformer: step {record.steps} of {record.planned_steps}"
        f" ({'finished' if record.finished else 'to be resumed'}); saved {out / 'pipeline'}"
    )
    return result


def build_vae_copy(cfg: TrainConfig, vae: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of a trained VAE with its statistics (the pipeline's; the stage keeps its own on the device)."""
    copy = build_vae_for(cfg, latents_mean=vae.config.latents_mean, latents_std=vae.config.latents_std)
    copy.load_state_dict({k: v.cpu() for k, v in vae.state_dict().items()})
    return copy.eval()


def train(
    cfg: TrainConfig,
    out: Path,
    device: str = "cpu",
    log=print,
    max_seconds: float | None = None,
    stage: str = "all",
    resume: Path | None = None,
    vae_dir: Path | None = None,
    stop_at_step: int | None = None,
    init_vae: Path | None = None,
) -> dict:
    """Run `stage` ("vae", "transformer" or "all") in this process; returns the record written last.

    "all" trains the VAE and then, if the VAE stage finished within the budget, the transformer on it (one
    rendering of the data for both); "transformer" needs `vae_dir` (a VAE saved by the VAE stage) or, when
    resuming, nothing else. `resume` is the checkpoint directory of the stage being resumed.
    """
    budget = Budget(started=time.monotonic(), max_seconds=max_seconds, stop_at_step=stop_at_step)
    out = Path(out)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every stage's shapes repeat; the VAE's small 3-D convolutions gain
    log(f"parameters {parameter_counts(cfg)}, {shipped_bytes(cfg) / 2**20:.1f} MiB in float32")
    if stage == "vae":
        return fit_vae(cfg, out, device, budget, resume, log, init=init_vae)[1]
    if stage == "transformer":
        if vae_dir is None:
            raise ValueError("stage transformer: --vae DIR (a VAE saved by the VAE stage) is required")
        return fit_transformer(cfg, out, device, budget, load_vae(Path(vae_dir), device), resume, log)
    if stage != "all":
        raise ValueError(f"stage: expected 'vae', 'transformer' or 'all', got {stage!r}")
    pool = render_pool(cfg, max(cfg.vae.videos_per_family, cfg.transformer.instances_per_family), log)
    vae, vae_record = fit_vae(cfg, out, device, budget, resume, log, pool=pool, init=init_vae)
    if not vae_record["finished"]:
        log("all: the VAE stage did not finish in this process; resume it with --stage vae before the transformer")
        return vae_record
    record = fit_transformer(cfg, out, device, budget, vae, None, log, pool=pool)
    record["vae"] = vae_record
    (out / "training.json").write_text(json.dumps(record, indent=1))
    return record


def export_pipeline(checkpoint: Path, vae_dir: Path, out: Path) -> Path:
    """The pipeline directory of a transformer checkpoint (its shipped weights) on the VAE it was trained on."""
    state = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_json(json.loads(state["config"]))
    if state["stage"] != "transformer":
        raise ValueError(f"export: {checkpoint} is a {state['stage']} checkpoint, not a transformer one")
    vae = load_vae(Path(vae_dir), "cpu")
    if module_digest(vae) != state["extra"]["vae_digest"]:
        raise ValueError(f"export: {vae_dir} is not the VAE this transformer was trained on")
    text_encoder, _, transformer = seeded_components(cfg)
    text_encoder.load_state_dict(state["text_encoder"])
    transformer.load_state_dict(state["ema"] if state.get("ema") is not None else state["module"])
    pipe = assemble_pipeline(cfg, text_encoder, build_vae_copy(cfg, vae), transformer)
    pipe.save_pretrained(Path(out), safe_serialization=True)
    write_model_settings(Path(out), text_tokens=cfg.transformer.text_tokens)
    return Path(out)


def export_vae(checkpoint: Path, config_dir: Path, out: Path) -> Path:
    """The VAE directory of a VAE checkpoint: its weights, with the latent statistics of `config_dir/config.json`
    (the `vae/` a VAE process wrote at the same step; the weights travel once, in the checkpoint)."""
    from diffusers import AutoencoderKLWan

    state = load_checkpoint(checkpoint)
    if state["stage"] != "vae":
        raise ValueError(f"export-vae: {checkpoint} is a {state['stage']} checkpoint, not a VAE one")
    vae = AutoencoderKLWan.from_config(AutoencoderKLWan.load_config(str(config_dir)))
    vae.load_state_dict(state["module"])
    vae.save_pretrained(Path(out), safe_serialization=True)
    return Path(out)
