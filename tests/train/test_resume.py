"""Training across processes: N resumed processes train what one process trains, checkpoints that cannot be
half-written or silently altered, and the resumes that must be refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from stepscope.train.checkpoint import CheckpointError, load_checkpoint, read_index, save_checkpoint
from stepscope.train.config import SMOKE
from stepscope.train.loop import decay_start, learning_rate, resumed_total
from stepscope.train.run import train
from tests.train.threads import one_torch_thread

# Long enough that each stage is split into three processes; small enough for a CPU in seconds.
CFG = SMOKE.replace(vae={"steps": 6}, transformer={"steps": 12, "warmup": 2})
QUIET = {"log": lambda line: None}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Each stage in one process: the VAE, then the transformer on the saved VAE."""
    out = tmp_path_factory.mktemp("one")
    train(CFG, out, stage="vae", **QUIET)
    train(CFG, out, stage="transformer", vae_dir=out / "vae", **QUIET)
    return out


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, uninterrupted):
    """The same stages, each stopped twice and resumed from its checkpoint in a later call."""
    out = tmp_path_factory.mktemp("three")
    for stop in (2, 4, None):
        resume = out / "vae-checkpoint" if stop != 2 else None
        train(CFG, out, stage="vae", resume=resume, stop_at_step=stop, **QUIET)
    for stop in (5, 9, None):
        resume = out / "transformer-checkpoint" if stop != 5 else None
        train(CFG, out, stage="transformer", vae_dir=out / "vae", resume=resume, stop_at_step=stop, **QUIET)
    return out


def _weights(path):
    return load_file(path / "diffusion_pytorch_model.safetensors")


def test_three_resumed_processes_train_what_one_process_trains(uninterrupted, resumed):
    for part in ("vae", "pipeline/transformer"):
        one, three = _weights(uninterrupted / part), _weights(resumed / part)
        assert one.keys() == three.keys()
        for key, tensor in one.items():
            torch.testing.assert_close(three[key], tensor, rtol=1e-5, atol=1e-6, msg=f"{part} {key}")
    for record_name, loop_key in (("vae.json", "loop"), ("training.json", "transformer")):
        one = json.loads((uninterrupted / record_name).read_text())[loop_key]
        three = json.loads((resumed / record_name).read_text())[loop_key]
        assert one["steps"] == three["steps"] == one["planned_steps"] and three["finished"]
        assert [s for s, _ in one["losses"]] == [s for s, _ in three["losses"]]
        assert [v for _, v in three["losses"]] == pytest.approx([v for _, v in one["losses"]], rel=1e-5)
        # The record tells the processes apart: where each began and ended, and why.
        assert [(c["from_step"], c["to_step"]) for c in one["calls"]] == [(0, one["steps"])]
        assert len(three["calls"]) == 3 and three["calls"][0]["from_step"] == 0
        assert [c["ended"] for c in three["calls"]][-1] == "finished"
        assert all(a["to_step"] == b["from_step"] for a, b in zip(three["calls"][:-1], three["calls"][1:], strict=True))
    # Before training, the same fixed-batch loss: the second and third processes did not measure it again.
    one, three = (json.loads((d / "training.json").read_text()) for d in (uninterrupted, resumed))
    assert three["flow_matching_loss"]["before"] == pytest.approx(one["flow_matching_loss"]["before"], rel=1e-6)
    assert three["flow_matching_loss"]["shipped"] < three["flow_matching_loss"]["before"]


def test_an_interrupted_process_leaves_a_checkpoint_and_a_loadable_vae(resumed, tmp_path):
    out = tmp_path / "stopped"
    record = train(CFG, out, stage="vae", max_seconds=0.0, **QUIET)  # out of time at once: one step, then save
    assert not record["finished"] and record["loop"]["steps"] == 1
    assert record["loop"]["calls"] == [
        {
            "from_step": 0,
            "to_step": 1,
            "seconds": record["loop"]["calls"][0]["seconds"],
            "seconds_per_step": None,
            "ended": "out of time",
        }
    ]
    index = read_index(out / "vae-checkpoint")
    assert (index["stage"], index["step"], index["total"]) == ("vae", 1, CFG.vae.steps)
    assert (out / "vae" / "config.json").is_file()  # the VAE so far, with statistics, for evaluation


def test_a_resume_with_other_settings_or_of_another_stage_is_refused(resumed):
    vae_checkpoint = resumed / "vae-checkpoint"
    with pytest.raises(ValueError, match=r"vae\.base_dim"):
        train(CFG.replace(vae={"base_dim": 8}), resumed / "x", stage="vae", resume=vae_checkpoint, **QUIET)
    with pytest.raises(ValueError, match="transformer stage"):
        train(CFG, resumed / "x", stage="transformer", vae_dir=resumed / "vae", resume=vae_checkpoint, **QUIET)
    with pytest.raises(ValueError, match="not .* VAE|trained on VAE"):
        other = resumed / "other-vae"
        train(CFG.replace(seed=5), other, stage="vae", **QUIET)
        train(
            CFG,
            resumed / "x",
            stage="transformer",
            vae_dir=other / "vae",
            resume=resumed / "transformer-checkpoint",
            **QUIET,
        )


def test_the_plan_may_grow_only_while_the_learning_rate_is_flat():
    warmup, fraction = 10, 0.2
    assert decay_start(warmup, 110, fraction) == 90
    assert resumed_total(50, 110, 210, warmup, fraction) == 210  # flat under both plans: same schedule so far
    for step in range(50):
        assert learning_rate(step, 1.0, warmup, 110, fraction) == learning_rate(step, 1.0, warmup, 210, fraction)
    with pytest.raises(ValueError, match="already"):
        resumed_total(95, 110, 210, warmup, fraction)  # the decay had begun
    with pytest.raises(ValueError, match="already"):
        resumed_total(50, 110, 55, warmup, fraction)  # the shorter plan would be decaying at step 50
    assert learning_rate(110, 1.0, warmup, 110, fraction) == pytest.approx(0.0)
    assert learning_rate(100, 1.0, warmup, 110, fraction) == pytest.approx(0.5)


def test_a_checkpoint_is_split_into_parts_replaced_whole_and_checked(tmp_path):
    state = {"stage": "vae", "step": 3, "total": 9, "weights": torch.arange(10_000, dtype=torch.float32)}
    directory = tmp_path / "ckpt"
    index = save_checkpoint(state, directory, part_bytes=8_000)
    assert len(index["parts"]) == -(-index["bytes"] // 8_000) > 1
    assert all((directory / p).stat().st_size <= 8_000 for p in index["parts"])
    torch.testing.assert_close(load_checkpoint(directory)["weights"], state["weights"], rtol=0, atol=0)
    # A second save replaces the first whole, and leaves no staging directory behind.
    save_checkpoint({**state, "step": 4}, directory, part_bytes=8_000)
    assert load_checkpoint(directory)["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    # An altered or missing part is refused, never loaded.
    part = directory / index["parts"][1]
    data = bytearray(part.read_bytes())
    data[0] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not add up"):
        load_checkpoint(directory)
    part.unlink()
    with pytest.raises(CheckpointError, match="missing parts"):
        load_checkpoint(directory)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "nothing")


def test_a_resumed_stage_with_a_time_budget_ends_its_schedule_without_a_jump():
    from stepscope.train.loop import earliest_resumed_total

    warmup, fraction = 10, 0.2
    assert earliest_resumed_total(500, 5000, 20000, warmup, fraction) == 5000  # decay starts at 4002, after 500
    total = earliest_resumed_total(500, 520, 20000, warmup, fraction)  # too few: the decay would have begun
    assert decay_start(warmup, total, fraction) >= 500 > decay_start(warmup, total - 3, fraction)  # about the fewest
    assert earliest_resumed_total(500, 520, 20000, warmup, 1.0) == 20000  # a full-length cosine cannot be cut


def test_a_fine_tune_starts_from_a_saved_vae_and_refuses_another_size(uninterrupted, tmp_path):
    saved = json.loads((uninterrupted / "vae.json").read_text())
    record = train(CFG, tmp_path / "tuned", stage="vae", init_vae=uninterrupted / "vae", stop_at_step=1, **QUIET)
    # Its first fixed-batch error is the saved VAE's last one (same weights, same videos), not a fresh start's.
    assert record["fixed_batch_mse"]["before"] == pytest.approx(saved["fixed_batch_mse"]["after"], rel=1e-5)
    assert record["init"]["digest"] == saved["digest"] and record["loop"]["calls"][0]["from_step"] == 0
    with pytest.raises(ValueError, match="not a VAE of this config's sizes"):
        train(
            CFG.replace(vae={"base_dim": 8}), tmp_path / "other", stage="vae", init_vae=uninterrupted / "vae", **QUIET
        )
