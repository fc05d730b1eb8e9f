"""torch.compile of each transformer block's forward, with the hooks left outside the graph.

Only `block.forward` is compiled, not the module call: PyTorch runs forward hooks around
`forward`, so stepscope's probes and rewrites stay plain Python that sees the exact block
output, while the block's own arithmetic (norms, modulation, RoPE, attention glue, FFN) is
fused. On an H100 this makes a Wan 1.3B forward about 18% faster (benchmarks/results/).
A block whose compiled forward fails falls back to eager for good, with a warning.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("stepscope.models")


class CompiledForward:
    """A block's forward that runs compiled, or eager once compilation has failed."""

    def __init__(self, eager):
        self.eager = eager
        self.compiled = torch.compile(eager, dynamic=None)
        self.failed: Exception | None = None

    def __call__(self, *args, **kwargs):
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # a backend that cannot compile this block: keep running eager
                self.failed = exc
                log.warning("torch.compile failed for a block, running it eagerly: %s", exc)
        return self.eager(*args, **kwargs)


def compile_blocks(transformer: torch.nn.Module) -> int:
    """Compile every block's forward in place; returns how many blocks were wrapped."""
    count = 0
    for block in transformer.blocks:
        if not isinstance(vars(block).get("forward"), CompiledForward):
            block.forward = CompiledForward(block.forward)
            count += 1
    return count


def uncompile_blocks(transformer: torch.nn.Module) -> None:
    """Back to the eager forwards (the compiled code stays cached by torch)."""
    for block in transformer.blocks:
        if isinstance(vars(block).get("forward"), CompiledForward):
            del block.forward


def compiled_state(transformer: torch.nn.Module) -> str:
    """'eager', 'compiled', or 'partly eager' when some blocks fell back."""
    wrapped = [vars(b).get("forward") for b in transformer.blocks]
    if not any(isinstance(w, CompiledForward) for w in wrapped):
        return "eager"
    if any(isinstance(w, CompiledForward) and w.failed for w in wrapped):
        return "partly eager"
    return "compiled"
