"""run_format: the run directory's paths and manifest types, without a model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stepscope import run_format as rf
from stepscope.store import RunDir


def minimal_manifest(**fields) -> rf.Manifest:
    return rf.Manifest.start(
        id="r1",
        spec={"prompt": "a maze"},
        model={"name": "tiny"},
        versions={"stepscope": "0"},
        shapes=rf.Shapes(latent=[16, 5, 8, 8], tokens=[5, 4, 4], video=[17, 64, 64], patch=[1, 2, 2]),
        probes=rf.ProbesRecord(captured_steps=[0, 1], layers=[0, 1], passes=["cond"], decode_steps=[], x0_arrays=True),
        preview=rf.PreviewMap(weight=[[0.0] * 16] * 3, bias=[0.0] * 3, fingerprint="f"),
        **fields,
    )


def test_paths_of_every_artifact():
    assert rf.x0_path("baseline", 7) == "trajectories/baseline/x0/step_007.npy"
    assert rf.preview_path("n1", 12) == "trajectories/n1/preview/step_012.png"
    assert rf.layer_norms_path("n1", "uncond", 3) == "trajectories/n1/layer_norms/uncond/step_003.npy"
    assert rf.decode_dir("baseline", 9) == "trajectories/baseline/decode/step_009"
    assert rf.decode_record_path("baseline", 9) == "trajectories/baseline/decode/step_009/decode.json"
    assert rf.frame_path(rf.final_dir("baseline"), 4) == "trajectories/baseline/final/frame_004.jpg"
    assert rf.video_path(rf.final_dir("baseline")) == "trajectories/baseline/final/video.mp4"
    assert rf.final_latents_path("b") == "trajectories/b/final/latents.npy"
    assert rf.convergence_path("b") == "trajectories/b/convergence.npy"
    assert rf.metrics_path("n1") == "metrics/n1.json"
    assert rf.difference_path("n1") == "metrics/n1/difference.npy"
    assert rf.swap_source_name("swap", 2) == "swap.source2"
    assert rf.layer_norms_key("cond") == "layer_norms.cond"


def test_one_name_for_each_input_image():
    assert rf.input_image_path("image") == "inputs/first_frame.png"
    field = "variants.0.interventions.1.source.image"
    assert rf.input_image_path(field) == "inputs/variants_0_interventions_1_source_image.png"
    assert rf.run_ref(rf.input_image_path("image")) == "run:inputs/first_frame.png"


def test_committed_json_schema_is_current():
    committed = json.loads(rf.SCHEMA_FILE.read_text())
    assert committed == json.loads(json.dumps(rf.manifest_json_schema())), (
        "docs/schema/manifest.schema.json is stale: run `python -m stepscope.run_format`"
    )


REPO = Path(__file__).resolve().parents[2]


def test_the_frontend_contract_is_generated_from_run_format_py():
    assert rf.JS_FILE.read_text() == rf.run_format_js(), (
        "frontend/contract/run_format.js is stale: run `python -m stepscope.run_format`"
    )


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make test installs it)")
def test_the_frontend_contract_names_what_python_names():
    """The generated JS, run by node, gives the same names and paths as run_format on the same inputs."""
    cases = {"steps": [0, 7, 42, 999, 1234], "frames": [0, 16, 80, 1000], "passes": ["cond", "uncond"]}
    script = f"""
        const rf = await import({json.dumps(rf.JS_FILE.as_uri())});
        const c = {json.dumps(cases)};
        console.log(JSON.stringify({{
          statuses: rf.RUN_STATUSES, final: rf.FINAL_STATUSES, manifest: rf.MANIFEST, format: rf.FORMAT,
          baseline: rf.BASELINE, named: [rf.RUNNING, rf.FINISHED, rf.FAILED, rf.CANCELLED],
          steps: c.steps.map(rf.stepName),
          frames: c.frames.map((k) => rf.framePath("trajectories/b/decode/step_004", k)),
          keys: c.passes.map(rf.layerNormsKey),
          norms: c.passes.map((p) => rf.isLayerNormsPath("trajectories/b/layer_norms/" + p + "/step_003.npy")),
          notNorms: rf.isLayerNormsPath("trajectories/b/x0/step_003.npy"),
        }}));
    """
    proc = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    js = json.loads(proc.stdout)
    assert js["statuses"] == list(rf.RUN_STATUSES) and js["final"] == list(rf.FINAL_STATUSES)
    assert js["named"] == list(rf.RUN_STATUSES)
    assert (js["manifest"], js["format"], js["baseline"]) == (rf.MANIFEST, rf.FORMAT, rf.BASELINE)
    assert js["steps"] == [rf.step_name(i) for i in cases["steps"]]
    assert js["frames"] == [rf.frame_path(rf.decode_dir("b", 4), k) for k in cases["frames"]]
    assert js["keys"] == [rf.layer_norms_key(p) for p in cases["passes"]]
    assert js["norms"] == [True, True] and js["notNorms"] is False


def test_no_frontend_module_builds_run_paths_or_statuses_itself():
    """The explorer names run files and statuses through frontend/contract/run_format.js (and events.js)."""
    by_hand = {
        "a frame path": re.compile(r"frame_\$\{"),
        "a padded step or frame": re.compile(r"padStart\(3"),
        "a layer-norms key or path": re.compile(r"layer_norms[./]"),
        "the manifest's name": re.compile(r"manifest\.json"),
        "a status literal": re.compile(r"\.status\s*(?:===|!==|=)\s*\"(?:queued|running|finished|failed|cancelled)\""),
    }
    offenders = []
    for path in (REPO / "frontend").rglob("*.js"):
        if {"tests", "contract", "node_modules"} & set(path.relative_to(REPO / "frontend").parts):
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(REPO)}: {what}" for what, pattern in by_hand.items() if pattern.search(text)]
    assert not offenders, offenders


def test_a_lost_writers_manifest_is_labelled_failed_without_being_parsed():
    raw = {"format": "stepscope-run/9", "status": "running", "trajectories": {"a": {"status": "running"}, "b": 3}}
    labelled = rf.failed_manifest(raw, "worker lost")
    assert labelled == {
        "format": "stepscope-run/9",
        "status": "failed",
        "error": "worker lost",
        "partial": True,
        "trajectories": {"a": {"status": "failed"}, "b": 3},
    }
    assert raw["status"] == "running" and raw["trajectories"]["a"]["status"] == "running"  # the input is not changed
    assert rf.failed_manifest({**raw, "status": "finished"}, "x", only_running=True) is None
    assert rf.failed_manifest(["not", "a", "run"], "x") is None


def test_writer_stores_each_change_and_reads_back(tmp_path):
    run = RunDir.at(str(tmp_path / "r1"))
    writer = rf.ManifestWriter(minimal_manifest(variants=["n1"]), run.write_manifest)
    assert run.manifest()["status"] == "running" and run.manifest()["trajectories"] == {}
    entry = rf.TrajectoryEntry(
        kind="baseline", status="running", seeds=[0], guidance=5.0, guidance_2=None, prompt="p", steps=[], decodes=[]
    )
    writer.start_trajectory("baseline", entry)
    timings = rf.StepTimings(step_seconds=0.1, store_seconds=0.01, forward_to_stored_seconds=0.02)
    record = rf.StepRecord(
        index=0, t=999.0, sigma=0.99, expert="transformer", artifacts={"x0": rf.x0_path("baseline", 0)}, timings=timings
    )
    writer.add_step("baseline", record)
    stored = run.manifest()["trajectories"]["baseline"]
    assert stored["steps"][0]["artifacts"]["x0"] == "trajectories/baseline/x0/step_000.npy"
    assert "final" not in stored and "variant" not in stored  # optional fields never set stay out
    writer.finish("cancelled", "stop", total_seconds=1.23456)
    data = run.manifest()
    assert data["status"] == "cancelled" and data["error"] == "stop"
    assert data["trajectories"]["baseline"]["status"] == "cancelled"
    assert data["timings"]["total_seconds"] == 1.2346
    parsed = rf.parse_manifest(data)
    assert parsed.format_version == rf.FORMAT_VERSION
    assert parsed.trajectories["baseline"].steps[0].sigma == 0.99


def test_version_1_manifests_still_read():
    data = minimal_manifest().to_json()
    data["format"] = "stepscope-run/1"
    del data["format_version"]
    data["inputs"] = {"variants.0.interventions.0.source.image": "inputs/swap-source-0.png"}
    parsed = rf.parse_manifest(data)
    assert parsed.format_version == 1
    assert parsed.inputs["variants.0.interventions.0.source.image"] == "inputs/swap-source-0.png"


@pytest.mark.parametrize("fmt", ["stepscope-run/4", None, "other/1"])
def test_unknown_formats_are_refused_clearly(fmt):
    data = minimal_manifest().to_json()
    data["format"] = fmt
    with pytest.raises(rf.RunFormatError, match="not one this stepscope reads"):
        rf.parse_manifest(data)


def test_a_malformed_manifest_names_the_field():
    data = minimal_manifest().to_json()
    data["shapes"] = {"latent": "wide"}
    with pytest.raises(rf.RunFormatError, match="manifest.json: shapes"):
        rf.parse_manifest(data)


def test_unknown_keys_from_newer_writers_are_kept():
    data = minimal_manifest().to_json()
    data["janitor_note"] = "x"
    assert rf.parse_manifest(data).to_json()["janitor_note"] == "x"


def test_perturbations_warnings_and_sweeps_are_typed_in_the_manifest(tmp_path):
    run = RunDir.at(str(tmp_path / "r2"))
    writer = rf.ManifestWriter(minimal_manifest(), run.write_manifest)
    entry = rf.TrajectoryEntry(
        kind="sweep_member",
        status="running",
        seeds=[0],
        guidance=5.0,
        guidance_2=None,
        prompt="p",
        sweep="s",
        sweep_index=0,
    )
    writer.start_trajectory("s.000", entry)
    applied = {
        "step": 3,
        "kind": "noise_at_step",
        "frames": None,
        "noise_l2": [1.5],
        "latent_l2": [2.0],
        "solver_state": "model_input+corrected_sample",
    }
    writer.set_perturbations("s.000", [applied])
    writer.add_warnings(["w1"])
    record = rf.SweepRecord(intervention={"kind": "noise_at_step"}, over="steps", values=[3.0], members=["s.000"])
    writer.start_sweep("s", record)
    curve = rf.SweepCurve(cka_x0_distance_final=[0.1], final_relative_l2=[0.2], score=[None])
    writer.set_sweep_curve("s", curve)
    data = run.manifest()
    assert data["trajectories"]["s.000"]["perturbations"] == [applied]
    assert data["warnings"] == ["w1"]
    assert data["sweeps"]["s"]["curve"]["final_relative_l2"] == [0.2]
    parsed = rf.parse_manifest(data)
    assert parsed.trajectories["s.000"].perturbations[0].noise_l2 == [1.5]
    assert parsed.sweeps["s"].curve.cka_x0_distance_final == [0.1]
    bad = {**applied, "solver_state": "elsewhere"}
    data["trajectories"]["s.000"]["perturbations"] = [bad]
    with pytest.raises(rf.RunFormatError, match="solver_state"):
        rf.parse_manifest(data)


def test_sweep_member_and_cond_x0_paths():
    assert rf.sweep_member_name("inject", 7) == "inject.007"
    assert rf.x0_cond_path("inject.007", 3) == "trajectories/inject.007/x0_cond/step_003.npy"


def test_progress_of_a_stored_run_counts_finished_trajectories_whole_and_others_to_their_last_step():
    timings = rf.StepTimings(step_seconds=0.1, store_seconds=0.01, forward_to_stored_seconds=0.02)

    def entry(status: str, indices: list[int]) -> rf.TrajectoryEntry:
        steps = [
            rf.StepRecord(index=i, t=1.0, sigma=0.5, expert="transformer", artifacts={}, timings=timings)
            for i in indices
        ]
        return rf.TrajectoryEntry(
            kind="baseline", status=status, seeds=[0], guidance=5.0, guidance_2=None, prompt="p", steps=steps
        )

    manifest = minimal_manifest()
    manifest.spec["steps"] = 10
    # Finished with every 4th step captured: all 10 done. Failed after capturing step 6: steps 0-6 done.
    manifest.trajectories = {"baseline": entry("finished", [0, 4, 8]), "n1": entry("failed", [0, 2, 6])}
    assert manifest.progress() == (10 + 7, 20)
    manifest.trajectories["n2"] = entry("running", [])
    assert manifest.progress() == (17, 30)
    assert minimal_manifest().progress() == (0, 0)  # no steps in the spec, no trajectories
