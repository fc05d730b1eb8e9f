"""One training run: render the task videos, train the VAE, encode the pool, train the transformer, save.

Output directory:
  <out>/pipeline/          `save_pretrained` of the WanImageToVideoPipeline (safetensors), what
                           `stepscope.models.load_model(<out>/pipeline)` loads
  <out>/training.json      the config, the seed ranges used, each stage's record (losses, steps, time)
  <out>/train_keys.txt     one instance key a line for the transformer's pool (evaluation counts
                           held-out instances that equal a training instance)
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from stepscope.train.build import assemble_pipeline, seeded_components
from stepscope.train.config import TrainConfig, parameter_counts, shipped_bytes
from stepscope.train.data import (
    TRAIN_SEEDS,
    held_out_refs,
    instance_keys,
    kept_rows,
    render_all,
    to_model_range,
    training_refs,
    worker_count,
)
from stepscope.train.transformer import (
    compiles_blocks,
    encode_pool,
    fixed_batch_loss,
    prompt_embeddings,
    train_transformer,
)
from stepscope.train.vae import reconstruction_error, train_vae

FIXED_BATCH = 8  # instances in the before/after loss comparison


def family_prompts(cfg: TrainConfig) -> list[str]:
    """The prompt of each family, in `cfg.families` order (a family's prompt is the same for all its instances)."""
    from stepscope.train.data import InstanceRef, make_instance

    first = [InstanceRef(f, cfg.difficulties[0], TRAIN_SEEDS.start) for f in cfg.families]
    return [make_instance(ref, cfg.size, cfg.frames).prompt for ref in first]


SAVE_RESERVE_SECONDS = 30.0  # kept at the end of a `max_seconds` run: fixed-batch losses, saving, the record
MIN_TRANSFORMER_SECONDS = 30.0  # under this the transformer stage still runs (the VAE's work is saved) but is flagged


def transformer_budget(cfg: TrainConfig, elapsed: float, max_seconds: float | None) -> tuple[float | None, str | None]:
    """The transformer stage's seconds — the config's, shortened so that the whole run ends within `max_seconds` —
    and a warning when that leaves it under `MIN_TRANSFORMER_SECONDS` (the run goes on, so the VAE is saved)."""
    configured = cfg.transformer.seconds
    if max_seconds is None:
        return configured, None
    left = max_seconds - elapsed - SAVE_RESERVE_SECONDS
    warning = None
    if left < MIN_TRANSFORMER_SECONDS:
        warning = (
            f"max_seconds: {max_seconds:.0f} s leaves the transformer {left:.0f} s after {elapsed:.0f} s (data, VAE):"
            " too short to learn the tasks; trained anyway so that the run is saved"
        )
        left = max(left, 1.0)
    return (left if configured is None else min(configured, left)), warning


def train(cfg: TrainConfig, out: Path, device: str = "cpu", log=print, max_seconds: float | None = None) -> dict:
    """Run both stages and save; returns the record written to training.json.

    `max_seconds` bounds the whole run (a machine lent for a fixed time): the transformer stage is shortened so
    that the weights are saved in time, and the record says so. Without it each stage keeps its own budget.
    """
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every stage's shapes repeat; the VAE's small 3-D convolutions gain
    torch.manual_seed(cfg.seed)
    workers = worker_count(cfg.generator_workers)
    text_encoder, vae, transformer = seeded_components(cfg)
    counts = parameter_counts(cfg)
    log(f"parameters {counts}, {shipped_bytes(cfg) / 2**20:.1f} MiB in float32")

    # The VAE's videos are the first instances of the transformer's pool (training seeds either way).
    tc = cfg.transformer
    pool_per_family = max(tc.instances_per_family, cfg.vae.videos_per_family)
    refs = training_refs(cfg.families, cfg.difficulties, pool_per_family)
    t0 = time.perf_counter()
    videos, keys = render_all(refs, cfg.size, cfg.frames, workers)
    render_seconds = time.perf_counter() - t0
    log(f"rendered {len(refs)} training videos in {render_seconds:.1f} s with {workers} worker processes")
    held_out = held_out_refs(cfg.families, cfg.difficulties, cfg.reserved_held_out)
    reserved = set(instance_keys(held_out, cfg.size, cfg.frames, workers))
    kept = kept_rows(refs, keys, reserved, pool_per_family)
    dropped = {f: pool_per_family - len(kept[f]) for f in cfg.families}
    log(f"dropped training instances equal to a reserved held-out one: {dropped}")
    empty = [f for f in cfg.families if not kept[f]]
    if empty:
        raise ValueError(f"families {empty}: every training instance equals a reserved held-out one")

    vae_rows = torch.tensor([i for f in cfg.families for i in kept[f][: cfg.vae.videos_per_family]])
    vae_videos = to_model_range(videos[vae_rows.numpy()], dev)
    probe_videos = vae_videos[:: max(1, len(vae_videos) // FIXED_BATCH)][:FIXED_BATCH].to(dev)
    vae_before = reconstruction_error(vae.to(dev), probe_videos)
    vae, vae_record = train_vae(cfg, vae, vae_videos, dev, log=log)
    vae_after = reconstruction_error(vae, probe_videos)
    del vae_videos

    pool = {f: kept[f][: tc.instances_per_family] for f in cfg.families}
    pool_rows = torch.tensor([i for f in cfg.families for i in pool[f]])
    t0 = time.perf_counter()
    x0, condition = encode_pool(vae, videos, pool_rows.numpy(), dev)
    encode_seconds = time.perf_counter() - t0
    family_index = torch.tensor([k for k, f in enumerate(cfg.families) for _ in pool[f]])
    del videos

    text_encoder = text_encoder.to(dev)
    pipe = assemble_pipeline(cfg, text_encoder, vae, transformer)
    texts = prompt_embeddings(pipe, family_prompts(cfg), dev)
    negative_text = prompt_embeddings(pipe, [""], dev)
    fixed = torch.arange(0, len(x0), max(1, len(x0) // FIXED_BATCH))[:FIXED_BATCH]  # spread over the families
    fixed_args = (x0[fixed].to(dev), condition[fixed].to(dev), texts[family_index[fixed].to(dev)])
    flow_before = fixed_batch_loss(cfg, transformer.to(dev), *fixed_args)
    seconds, budget_warning = transformer_budget(cfg, time.perf_counter() - started, max_seconds)
    if budget_warning:
        log(f"transformer: warning: {budget_warning}")
    if seconds != tc.seconds:
        log(f"transformer: {seconds:.0f} s of its {tc.seconds} s budget fit --max-seconds {max_seconds:.0f}")
    trained, ema, transformer_record = train_transformer(
        cfg.replace(transformer={"seconds": seconds}),
        transformer,
        x0,
        condition,
        family_index,
        texts,
        negative_text,
        dev,
        log=log,
    )
    # A compiled module would recompile for the fixed batch's shape (~20 s); the shipped EMA is measured either way.
    flow_after = None if compiles_blocks(cfg, dev) else fixed_batch_loss(cfg, trained, *fixed_args)
    flow_after_ema = fixed_batch_loss(cfg, ema, *fixed_args)

    shipped = assemble_pipeline(cfg, text_encoder.cpu(), vae.cpu(), ema.cpu())
    shipped.save_pretrained(out / "pipeline", safe_serialization=True)
    (out / "train_keys.txt").write_text("".join(keys[i] + "\n" for i in pool_rows.tolist()))
    record = {
        "config": cfg.to_json(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "parameters": counts,
        "shipped_bytes_estimate": shipped_bytes(cfg),
        "shipped_bytes_on_disk": sum(p.stat().st_size for p in (out / "pipeline").rglob("*.safetensors")),
        "training_seeds": {"start": TRAIN_SEEDS.start, "per_family": pool_per_family},
        "reserved_held_out_per_family": cfg.reserved_held_out,
        "dropped_as_reserved_duplicates": dropped,
        "pool_per_family": {f: len(rows) for f, rows in pool.items()},
        "render_seconds": round(render_seconds, 2),
        "encode_seconds": round(encode_seconds, 2),
        "vae": vae_record.to_json(),
        "transformer": transformer_record.to_json(),
        "max_seconds": max_seconds,
        "transformer_seconds_budget": seconds,
        "transformer_budget_warning": budget_warning,
        # The same batch, noise and σ before and after training, in float32 (no autocast) on any device.
        "fixed_batch": {
            "vae_reconstruction_mse": {"before": vae_before, "after": vae_after},
            "flow_matching_loss": {"before": flow_before, "after": flow_after, "after_ema": flow_after_ema},
        },
        "text_encoder": "frozen at its seeded random initialisation",
        "latents_mean": list(vae.config.latents_mean),
        "latents_std": list(vae.config.latents_std),
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1))
    log(f"saved {out / 'pipeline'} in {record['seconds']} s")
    return record
