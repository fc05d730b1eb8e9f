"""Reproduce the paper's analyses on a model with one command: `stepscope reproduce --model M --out DIR`.

Six analyses on held-out task instances, every run stored as a normal run directory under DIR/runs/
(docs/reproduce.md): noise at a step vs in a frame, sensitivity against the injection step, layer roles
(foreground token energy), layer swap, seed ensemble and candidate curves. `add_arguments` and
`run_from_args` give the command-line options (used by `stepscope reproduce` and `python -m
stepscope.reproduce`); `run_reproduce` runs on a loaded model.
"""

from stepscope.reproduce.command import add_arguments, main, run_from_args, run_reproduce
from stepscope.reproduce.config import ReproduceConfig, make_config

__all__ = ["ReproduceConfig", "add_arguments", "main", "make_config", "run_from_args", "run_reproduce"]
