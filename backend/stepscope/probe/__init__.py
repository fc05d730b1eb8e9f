"""The probe engine: run a diffusers Wan pipeline with probes and interventions.

from stepscope.models import load_model
from stepscope.probe import run_experiment
from stepscope.spec import check_spec
from stepscope.store import RunDir

model = load_model("tiny")
manifest = run_experiment(model, check_spec({"prompt": "a maze"}, model.info), RunDir.at("runs/demo"))
"""

from stepscope.probe.encoder_cache import EncoderCache
from stepscope.probe.experiment import Experiment, run_experiment
from stepscope.probe.trajectory import Cancelled, ProbeError, StepCapture, TrajectoryInputs, run_trajectory

__all__ = [
    "Cancelled",
    "EncoderCache",
    "Experiment",
    "ProbeError",
    "StepCapture",
    "TrajectoryInputs",
    "run_experiment",
    "run_trajectory",
]
