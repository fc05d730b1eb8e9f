"""Helpers for probe tests: collecting sinks and direct block-output recorders."""

from __future__ import annotations

import torch

from stepscope.probe.trajectory import StepSink, TrajectoryInputs


class CollectingSink(StepSink):
    def __init__(self):
        self.captures = []

    def on_step(self, capture):
        self.captures.append(capture)

    @property
    def x0(self):
        return [c.x0.clone() for c in self.captures]


def inputs(**overrides) -> TrajectoryInputs:
    base = dict(
        prompt="a red ball rolls through a maze",
        negative_prompt="blurry",
        seeds=[0],
        steps=12,
        guidance=5.0,
        guidance_2=None,
        height=64,
        width=64,
        frames=17,
    )
    base.update(overrides)
    return TrajectoryInputs(**base)


class BlockOutputs:
    """Records every block output of every expert, in call order, with plain forward hooks."""

    def __init__(self, model):
        self.calls: list[tuple[str, int, torch.Tensor]] = []
        self.handles = []
        for name, module in model.experts.items():
            for layer, block in enumerate(module.blocks):
                self.handles.append(block.register_forward_hook(self._hook(name, layer)))

    def _hook(self, expert, layer):
        def hook(module, args, output):
            self.calls.append((expert, layer, output.detach().clone()))

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def per_forward(self, num_layers: int):
        """Group calls into forwards: list of (expert, [output of layer 0..L-1])."""
        out = []
        for i in range(0, len(self.calls), num_layers):
            chunk = self.calls[i : i + num_layers]
            assert [c[1] for c in chunk] == list(range(num_layers))
            out.append((chunk[0][0], [c[2] for c in chunk]))
        return out
