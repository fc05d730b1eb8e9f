"""The training code: the CPU smoke run of the real training path, the saved pipeline under stepscope's loader and
probes, the seed split, the size budget of the full config, the schedule and the evaluation's statistics."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from stepscope.models import load_model
from stepscope.probe import StepCapture, TrajectoryInputs, run_trajectory
from stepscope.probe.trajectory import StepSink, initial_latents
from stepscope.train.build import parameter_counts, seeded_components, shipped_bytes
from stepscope.train.cli import config_with_overrides
from stepscope.train.config import FULL, MAX_SHIPPED_BYTES, SMOKE
from stepscope.train.data import (
    HELD_OUT_SEEDS,
    SPLITS,
    TASK_PARTS,
    TRAIN_SEEDS,
    InstanceRef,
    held_out_refs,
    instance_key,
    make_instance,
    split_refs,
    task_part,
    training_refs,
)
from stepscope.train.evaluate import evaluate, first_frame_batch
from stepscope.train.flow import condition_latents, sample_latents
from stepscope.train.loop import TIMING_SKIP, TIMING_STEPS, learning_rate, run_loop
from stepscope.train.run import train
from stepscope.train.transformer import Ema, prompt_embeddings
from tests.train.threads import one_torch_thread


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, one_thread):
    """One smoke training run (both stages, saved), shared by the tests below."""
    out = tmp_path_factory.mktemp("smoke")
    return out, train(SMOKE, out, device="cpu", log=lambda line: None)


@pytest.fixture(scope="module")
def smoke_model(smoke_run):
    out, _ = smoke_run
    return load_model(str(out / "pipeline"), dtype="float32")


def test_the_smoke_run_lowers_both_losses_on_a_fixed_batch(smoke_run):
    _, record = smoke_run
    assert record["vae"]["loop"]["steps"] == SMOKE.vae.steps and record["vae"]["finished"]
    assert record["transformer"]["steps"] == SMOKE.transformer.steps and record["finished"]
    vae = record["vae"]["fixed_batch_mse"]
    flow = record["flow_matching_loss"]
    assert vae["after"] < 0.9 * vae["before"], vae
    assert flow["after"] < 0.8 * flow["before"], flow
    assert flow["shipped"] < 0.9 * flow["before"], flow  # the shipped (EMA) weights learned too


def test_the_saved_directory_is_a_diffusers_i2v_pipeline_of_the_planned_size(smoke_run, smoke_model):
    out, record = smoke_run
    index = json.loads((out / "pipeline" / "model_index.json").read_text())
    assert index["_class_name"] == "WanImageToVideoPipeline"
    assert index["expand_timesteps"] is False and index["boundary_ratio"] is None
    info = smoke_model.info
    assert (info.task, info.experts, info.num_layers) == ("i2v", ("transformer",), SMOKE.transformer.num_layers)
    assert smoke_model.pipe.transformer.config.in_channels == 36
    # The text length it was trained with travels with the directory and reaches every sampler.
    assert info.text_tokens == SMOKE.transformer.text_tokens != 512
    # The VAE carries the measured latent statistics, not the Wan 2.1 defaults.
    assert smoke_model.pipe.vae.config.latents_std == pytest.approx(record["latents_std"])
    assert len(set(record["latents_mean"])) > 1
    on_disk, estimate = record["shipped_bytes_on_disk"], shipped_bytes(SMOKE)
    assert estimate <= on_disk <= estimate + 64 * 1024  # float32 weights plus safetensors headers
    assert (out / "train_keys.txt").read_text().count("\n") == sum(record["pool_per_family"].values())


class Keep(StepSink):
    def __init__(self):
        self.steps: list[StepCapture] = []

    def on_step(self, capture: StepCapture) -> None:
        self.steps.append(capture)


def test_the_saved_model_runs_a_probed_trajectory_and_the_batched_sampler_matches_it(smoke_model):
    task = make_instance(InstanceRef("maze", 1, HELD_OUT_SEEDS.seed(0)), SMOKE.size, SMOKE.frames)
    inputs = TrajectoryInputs(
        prompt=task.prompt,
        negative_prompt="",
        seeds=[3],
        steps=4,
        guidance=5.0,
        guidance_2=None,
        height=SMOKE.size,
        width=SMOKE.size,
        frames=SMOKE.frames,
        image=task.first_frame_image(),
    )
    sink = Keep()
    result = run_trajectory(smoke_model, inputs, layers=[0, 1], sink=sink)
    assert [c.index for c in sink.steps] == [0, 1, 2, 3]
    assert sink.steps[0].x0.shape == (1, 16, 3, 8, 8)
    assert sink.steps[0].layer_norms["cond"].shape == (1, 2, 3 * 4 * 4)  # 3 latent frames of 4×4 tokens
    assert all(torch.isfinite(c.x0).all() for c in sink.steps)

    # The evaluation's batched sampler, from the same noise, lands where the pipeline landed.
    pipe = smoke_model.pipe
    condition = condition_latents(pipe.vae, first_frame_batch([task], SMOKE.frames))
    tokens = smoke_model.info.text_tokens
    text = prompt_embeddings(pipe, [task.prompt], torch.device("cpu"), tokens)
    negative = prompt_embeddings(pipe, [""], torch.device("cpu"), tokens)
    noise = initial_latents(smoke_model, inputs)
    estimates = {}
    ours = sample_latents(
        pipe.transformer,
        condition,
        text,
        negative,
        noise,
        scheduler_like=pipe.scheduler,
        steps=4,
        guidance=5.0,
        on_step=lambda i, x0: estimates.setdefault(i, x0),
    )
    torch.testing.assert_close(ours, result.final_latents, rtol=1e-3, atol=1e-3)
    for capture in sink.steps:  # each step's x̂₀ is the one stepscope's probe read from UniPC
        torch.testing.assert_close(estimates[capture.index], capture.x0.float(), rtol=1e-3, atol=1e-3)


def test_the_training_condition_is_the_pipelines(smoke_model):
    pipe = smoke_model.pipe
    tasks = [make_instance(InstanceRef(f, 2, TRAIN_SEEDS.seed(5)), SMOKE.size, SMOKE.frames) for f in SMOKE.families]
    ours = condition_latents(pipe.vae, first_frame_batch(tasks, SMOKE.frames))
    for i, task in enumerate(tasks):
        image = pipe.video_processor.preprocess(task.first_frame_image(), height=SMOKE.size, width=SMOKE.size)
        _, theirs = pipe.prepare_latents(
            image, 1, 16, SMOKE.size, SMOKE.size, SMOKE.frames, torch.float32, torch.device("cpu"), None, None
        )
        torch.testing.assert_close(ours[i : i + 1], theirs, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours[0], ours[1])  # different first frames, different conditions


def test_evaluation_samples_held_out_instances_and_reports_intervals(smoke_model):
    lines = []
    # Pretend the first held-out instance of each family was trained on: the overlap count must find it.
    first = held_out_refs(SMOKE.families, SMOKE.difficulties, 1, SMOKE.size, SMOKE.frames)
    seen = {instance_key(make_instance(r, SMOKE.size, SMOKE.frames)) for r in first}
    record = evaluate(
        smoke_model,
        cfg=SMOKE,
        per_family=2,
        steps=2,
        batch=2,
        train_keys=seen,
        vae_ceiling=True,
        chain_of_steps_mazes=2,
        workers=1,
        log=lines.append,
    )
    assert record["held_out_seeds_start"] == HELD_OUT_SEEDS.start
    assert [f["family"] for f in record["families"]] == list(SMOKE.families)
    for family in record["families"]:
        assert family["n"] == 2 and 0 <= family["passed"] <= 2 and family["overlap_with_training"] == 1
        lo, hi = family["ci95"]
        assert lo <= family["success_rate"] <= hi
        assert 0.0 <= family["vae_ceiling"] <= 1.0
    assert json.loads(lines[-1]) == record
    cos = record["chain_of_steps"]
    assert cos["n"] == 2 and 0 <= cos["explored_then_committed"] <= 2 and len(cos["mean_live_per_step"]) == 2
    assert cos["ci95"][0] <= cos["fraction"] <= cos["ci95"][1]


def test_the_training_and_held_out_seeds_never_meet():
    assert TRAIN_SEEDS.stop <= HELD_OUT_SEEDS.start
    train_seeds = {
        r.seed for r in training_refs(FULL.families, FULL.difficulties, FULL.transformer.instances_per_family)
    }
    held_out = {r.seed for r in held_out_refs(FULL.families, FULL.difficulties, 30)}
    assert train_seeds and held_out and not train_seeds & held_out
    assert all(s in TRAIN_SEEDS for s in train_seeds) and all(s in HELD_OUT_SEEDS for s in held_out)
    with pytest.raises(ValueError, match="training seed index"):
        TRAIN_SEEDS.seed(TRAIN_SEEDS.stop - TRAIN_SEEDS.start)  # past the end is an error, not a held-out seed
    # The same reference gives the same instance; the split's first instances differ.
    a = make_instance(training_refs(("maze",), (2,), 1)[0], 64, 17)
    b = make_instance(training_refs(("maze",), (2,), 1)[0], 64, 17)
    c = make_instance(held_out_refs(("maze",), (2,), 1)[0], 64, 17)
    assert instance_key(a) == instance_key(b) != instance_key(c)


def test_the_full_config_fits_the_budget_and_the_count_is_the_built_models():
    assert FULL.transformer.num_layers >= 12
    assert shipped_bytes(FULL) <= MAX_SHIPPED_BYTES
    built = dict(zip(("text_encoder", "vae", "transformer"), seeded_components(SMOKE), strict=True))
    assert parameter_counts(SMOKE) == {name: sum(p.numel() for p in m.parameters()) for name, m in built.items()}


def test_the_schedule_warms_up_then_decays_to_zero():
    assert learning_rate(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert learning_rate(55, 1.0, 10, 100) == pytest.approx(0.5)
    assert learning_rate(100, 1.0, 10, 100) == pytest.approx(0.0)


def test_a_time_budget_fixes_the_step_count_after_timing_some_steps():
    weight = torch.nn.Parameter(torch.tensor([3.0]))
    record = run_loop(
        [weight],
        lambda step: (weight**2).sum(),
        device=torch.device("cpu"),
        lr=0.1,
        warmup=10,
        max_steps=10**9,
        seconds=0.5,
        log=lambda line: None,
    )
    assert record.seconds_per_step is not None and record.seconds_per_step > 0
    assert TIMING_SKIP + TIMING_STEPS < record.steps == record.planned_steps < 10**9
    assert abs(weight.item()) < 3.0


def test_evaluation_rates_get_wilson_intervals_that_never_collapse():
    from stepscope.stats import mean_interval

    lo, hi = mean_interval(np.array([1] * 90 + [0] * 10))
    assert 0.82 < lo < 0.87 and 0.93 < hi < 0.97
    lo, hi = mean_interval(np.ones(20))
    assert hi == 1.0 and 0.8 < lo < 0.9  # 20/20 is not certainty


def test_config_overrides_name_what_is_wrong():
    cfg = config_with_overrides("smoke", 7, ["transformer.steps=5", "vae.seconds=null", "flow_shift=5.0"])
    assert (cfg.seed, cfg.transformer.steps, cfg.vae.seconds, cfg.flow_shift) == (7, 5, None, 5.0)
    with pytest.raises(SystemExit, match="bogus"):
        config_with_overrides("smoke", None, ["transformer.bogus=1"])
    with pytest.raises(SystemExit, match="PART.FIELD=JSON"):
        config_with_overrides("smoke", None, ["steps"])


def test_every_task_belongs_to_one_part_by_its_key_and_a_split_draws_only_its_own():
    keys = [hashlib.sha256(str(k).encode()).hexdigest()[:16] for k in range(20_000)]  # keys are such hashes
    shares = {part: sum(task_part(k) == part for k in keys) / len(keys) for part, _ in TASK_PARTS}
    assert shares == pytest.approx({"held-out": 0.2, "validation": 0.1, "training": 0.7}, abs=0.01)
    assert task_part("00000000ffffffff") == task_part("00000000aaaaaaaa")  # the first 8 hex digits decide
    # The trajectory family has few tasks (160 at 64×64×17): a split's instances repeat them, never another part's.
    for split in ("held-out", "validation", "training"):
        refs = split_refs(("trajectory",), (1, 2, 3), 40, split, 64, 17)
        tasks = [make_instance(r, 64, 17) for r in refs]
        assert len(tasks) == 40 and all(r.seed in SPLITS[split] for r in refs)
        assert {task_part(instance_key(t)) for t in tasks} == {split}
        assert len({instance_key(t) for t in tasks}) < 40  # repeats: the same task, another noise seed


def test_the_smoke_pool_trains_on_no_held_out_or_validation_task(smoke_run):
    out, record = smoke_run
    trained = (out / "train_keys.txt").read_text().split()
    assert trained and {task_part(k) for k in trained} == {"training"}
    assert sum(record["pool_per_family"].values()) == len(trained)


def test_the_ema_moves_by_one_minus_its_warming_up_decay():
    module = torch.nn.Linear(3, 3)
    ema = Ema(module, decay=0.999)
    start = ema.shadow.weight.clone()
    with torch.no_grad():
        module.weight.add_(1.0)
    ema.update(0)  # decay min(0.999, 1/10) = 0.1: the shadow moves 90% of the way
    torch.testing.assert_close(ema.shadow.weight, start + 0.9)
    ema.update(10**6)  # decay 0.999: 0.1% of the remaining 0.1
    torch.testing.assert_close(ema.shadow.weight, start + 0.9 + 0.001 * 0.1)


def test_the_same_seed_trains_the_same_model_and_another_seed_starts_elsewhere(smoke_run, tmp_path):
    from safetensors.torch import load_file

    out, record = smoke_run
    again = train(SMOKE, tmp_path, device="cpu", log=lambda line: None)
    assert again["vae"]["fixed_batch_mse"] == pytest.approx(record["vae"]["fixed_batch_mse"], rel=1e-5)
    assert again["flow_matching_loss"] == pytest.approx(record["flow_matching_loss"], rel=1e-5)
    for part, name in (("transformer", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model")):
        first = load_file(out / "pipeline" / part / f"{name}.safetensors")
        second = load_file(tmp_path / "pipeline" / part / f"{name}.safetensors")
        for key, tensor in first.items():
            torch.testing.assert_close(second[key], tensor, rtol=1e-5, atol=1e-6)
    other = seeded_components(SMOKE.replace(seed=1))[2].state_dict()
    assert any(not torch.allclose(t, other[k]) for k, t in seeded_components(SMOKE)[2].state_dict().items())


def test_the_vae_trains_on_windows_of_one_plus_four_k_frames():
    from stepscope.train.vae import train_vae

    _, vae, _ = seeded_components(SMOKE)
    videos = torch.zeros(2, SMOKE.frames, SMOKE.size, SMOKE.size, 3, dtype=torch.uint8)
    for clip in (7, SMOKE.frames + 4):
        with pytest.raises(ValueError, match="vae.clip_frames"):
            train_vae(SMOKE.replace(vae={"clip_frames": clip}), vae, videos, torch.device("cpu"), log=lambda line: None)


@pytest.mark.parametrize("cfg", [FULL, SMOKE], ids=["full", "smoke"])
def test_every_family_prompt_fits_the_text_length(cfg):
    # The pipeline truncates a prompt to `max_sequence_length` without a word: a family prompt longer than the
    # model's text length would lose its end in training, sampling and the service alike.
    from stepscope.models.tiny import build_tokenizer
    from stepscope.train.run import family_prompts

    tokenizer = build_tokenizer()
    lengths = {p: len(tokenizer(p, add_special_tokens=True).input_ids) for p in family_prompts(cfg)}
    assert lengths and max(lengths.values()) <= cfg.transformer.text_tokens, lengths


def test_the_vae_gate_says_which_frames_its_reconstructions_get_wrong():
    from stepscope.train.build import build_vae_for
    from stepscope.train.evaluate import frame_max_error, reconstructions, split_tasks, vae_ceiling

    truth = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    wrong = truth.copy()
    wrong[2, 1, 3, 0] = 200  # one pixel of frame 2
    assert frame_max_error(truth, truth).tolist() == [0] * 5
    assert frame_max_error(truth, wrong).tolist() == frame_max_error(wrong, truth).tolist() == [0, 0, 200, 0, 0]

    torch.manual_seed(0)
    vae = build_vae_for(SMOKE).eval()
    # held-out, as the gate runs (a random VAE chooses nothing); the smoke canvas has no trajectory validation part
    record = vae_ceiling(vae, cfg=SMOKE, per_family=2, split="held-out", workers=0, log=lambda _: None)
    for family in record["families"]:
        tasks = split_tasks(SMOKE, family["family"], "held-out", 2)
        videos = reconstructions(vae, tasks)
        # Recomputed frame by frame in int32 (the gate's own code takes the whole video in int16).
        errors = [
            [
                int(np.max(np.abs(t.ground_truth()[f].astype(np.int32) - v[f].astype(np.int32))))
                for f in range(SMOKE.frames)
            ]
            for t, v in zip(tasks, videos, strict=True)
        ]
        assert family["frame_error"]["max"] == np.max(errors, axis=0).tolist()
        np.testing.assert_allclose(family["frame_error"]["mean"], np.mean(errors, axis=0), atol=0.05)
        assert len(family["frame_error"]["mean"]) == SMOKE.frames
