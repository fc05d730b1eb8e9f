"""What one reproduction runs: instances, steps, strengths, swept steps and layers; full and reduced sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from stepscope.tasks import Canvas

NOISE_UNITS = "latent_std"  # noise strength × the latent's std at the step it is added (docs/experiments.md)
FULL_STRENGTHS = (0.25, 0.5, 1.0, 2.0)
REDUCED_STRENGTHS = (1.0,)
SWEEP_STRENGTH = 1.0  # the injection-step sweep's noise strength (analysis 2)
ENSEMBLE_SEEDS = 3
# Per trajectory of the sweep runs: capture every k-th step; the last step is always captured. The
# sweeps need only the final comparison and the final video, and every stored step rewrites the
# whole manifest (a run's cost grows with the square of its stored steps).
SWEEP_CAPTURE_EVERY = 5


@dataclass(frozen=True)
class ReproduceConfig:
    """Every size and parameter of one reproduction (stored in findings.json)."""

    families: tuple[str, ...]
    n: int  # instances per family
    steps: int
    size: int
    frames: int
    guidance: float | None  # None: the spec's default
    strengths: tuple[float, ...]  # analysis 1, in NOISE_UNITS
    noise_step: int  # analysis 1: the step whose entering latent gets noise in every frame
    noise_frame: int  # analysis 1: the latent frame that gets noise at every step
    sweep_strength: float  # analysis 2
    injection_steps: tuple[int, ...]  # analysis 2
    swap_layers: tuple[int, ...]  # analysis 4
    swap_frames: tuple[int, ...]  # analysis 4: latent frames whose tokens are swapped
    ensemble_seeds: int  # analysis 5
    sweep_every: int  # capture every k-th step in the sweep runs (analyses 1, 2, 4)
    reduced: bool

    @property
    def canvas(self) -> Canvas:
        return Canvas(size=self.size, frames=self.frames)

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // 4 + 1

    def to_json(self) -> dict:
        return asdict(self)


def make_config(
    families: list[str],
    n: int,
    steps: int,
    num_layers: int,
    *,
    size: int = 64,
    frames: int = 17,
    guidance: float | None = None,
    reduced: bool = False,
) -> ReproduceConfig:
    """The full reproduction, or (`reduced`) one strength, injection steps 1 and the last, two swap layers."""
    canvas = Canvas(size=size, frames=frames)  # raises TaskError for a canvas no task fits
    latent_frames = (canvas.frames - 1) // 4 + 1
    if reduced:
        injection = tuple(sorted({1, steps - 1}))
        layers = tuple(sorted({num_layers // 2, num_layers - 1}))
        strengths = REDUCED_STRENGTHS
    else:
        injection, layers, strengths = tuple(range(steps)), tuple(range(num_layers)), FULL_STRENGTHS
    return ReproduceConfig(
        families=tuple(families),
        n=n,
        steps=steps,
        size=canvas.size,
        frames=canvas.frames,
        guidance=guidance,
        strengths=strengths,
        noise_step=steps // 2,
        noise_frame=latent_frames // 2,
        sweep_strength=SWEEP_STRENGTH,
        injection_steps=injection,
        swap_layers=layers,
        # Latent frame 0 holds the given first frame; swapping all tokens would make every layer equivalent.
        swap_frames=tuple(range(1, latent_frames)),
        ensemble_seeds=ENSEMBLE_SEEDS,
        sweep_every=min(SWEEP_CAPTURE_EVERY, steps),
        reduced=reduced,
    )


def trajectories_per_instance(cfg: ReproduceConfig) -> float:
    """Trajectory-equivalents (one full-length single-seed run = 1) one instance costs, for the time estimate.

    A sweep member acting first at step k > 0 resumes from the baseline's state, so it runs (steps − k) steps;
    a seed ensemble of k seeds is counted as k runs (one batch of k).
    """
    s = cfg.steps
    noise = 1 + len(cfg.strengths) * ((s - cfg.noise_step) / s + 1)
    sweep = 1 + sum((s - k) / s for k in cfg.injection_steps)
    swap = 2 + len(cfg.swap_layers)
    trajectory = 1 + cfg.ensemble_seeds
    return noise + sweep + swap + trajectory
