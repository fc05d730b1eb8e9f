"""Encode each distinct prompt and first frame once per experiment (or per bench, per reproduction).

    cache = EncoderCache(model.pipe)
    with cache.serving():
        run_trajectory(model, inputs)   # encodes the prompt, the negative prompt and (i2v) the first frame
        run_trajectory(model, variant)  # same texts and image: the stored outputs, no encoder runs

The pipeline still runs its own `__call__`: it cleans and tokenizes the prompt, decides from the guidance
whether a negative prompt is encoded, trims, repeats per video and casts the embeddings, and builds the
image condition, exactly as without the cache. Only two calls look their exact input up first: the text
encoder's `forward` (token ids and mask) and the VAE's `encode` (the first-frame video an image-to-video
pipeline's `prepare_latents` builds). A call whose input was seen returns a copy of the stored output and the
module does not run; any other call runs it and stores a copy of what it returned.

Why there and not `prompt_embeds=` or a precomputed latent: diffusers 0.42.1's `WanImageToVideoPipeline`
takes no precomputed image latent (`prepare_latents` always calls `vae.encode`), and `prompt_embeds` would
change what the pipeline is asked (no `prompt`, so the batch comes from the embeddings and a seed ensemble's
`num_videos_per_prompt` is not applied to them; a pipeline that reads `prompt` sees none), while a cache at
the encoders leaves every argument of the call as it was.

An input's key is its SHA-256 with its shape, strides, dtype and device (a tensor), or its repr (None, bool,
int, float, str); a call with any other argument, or with gradients on, is never cached. Outputs stay on the
device they were made on; past `capacity` the least recently used entry goes (at Wan's real sizes a first
frame's entry, the posterior of a 21×60×104 latent, is ~34 MB, a text's 4–8 MB). For a real image-to-video
run the key hashes the whole conditioning video (388 MB at 81×480×832 float32, ~0.3 s of SHA-256 on one core)
against the seconds of an 81-frame VAE encode it saves.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from stepscope.probe.hooks import HookSet

TEXT_ENCODER = "text_encoder"
VAE_ENCODE = "vae_encode"
# Entries: an experiment reuses its prompt, negative prompt and image (a swap source's are used once); a bench
# keeps those of its current instance and the family's prompt, so older first frames can go.
DEFAULT_CAPACITY = 8


@dataclass
class EncoderCounts:
    """Calls to one encoder while the cache served: `computed` ran the module, `reused` returned a stored output."""

    computed: int = 0
    reused: int = 0


class EncoderCache:
    """Outputs of one pipeline's text encoder and VAE encode, keyed on their exact inputs (see the module).

    `capacity=0` stores nothing: every call runs the encoder (the behaviour without a cache), still counted.
    Used from one thread: the experiment's own; its background decodes never encode.
    """

    def __init__(self, pipe: Any, *, capacity: int = DEFAULT_CAPACITY):
        if capacity < 0:
            raise ValueError(f"capacity must be ≥ 0, got {capacity}")
        self.pipe = pipe
        self.capacity = capacity
        self.counts = {TEXT_ENCODER: EncoderCounts(), VAE_ENCODE: EncoderCounts()}
        self._entries: OrderedDict[tuple, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @contextmanager
    def serving(self) -> Iterator[EncoderCache]:
        """While inside, the pipeline's text encoder and `vae.encode` go through the cache; they are restored after."""
        hooks = HookSet()
        try:
            text_encoder = getattr(self.pipe, "text_encoder", None)
            if text_encoder is not None:
                hooks.patch(text_encoder, "forward", self._memoized(TEXT_ENCODER, text_encoder.forward))
            vae = getattr(self.pipe, "vae", None)
            if vae is not None:
                # Wraps what `vae.encode` is now (the experiment's lock around it): a reused output takes no lock.
                hooks.patch(vae, "encode", self._memoized(VAE_ENCODE, vae.encode))
            yield self
        finally:
            hooks.remove()

    def _memoized(self, kind: str, original: Callable) -> Callable:
        counts = self.counts[kind]

        def call(*args, **kwargs):
            key = None if self.capacity == 0 or torch.is_grad_enabled() else _input_key(kind, args, kwargs)
            if key is None:
                counts.computed += 1
                return original(*args, **kwargs)
            if key in self._entries:
                self._entries.move_to_end(key)
                counts.reused += 1
                return copy.deepcopy(self._entries[key])  # a copy: nothing the caller does reaches the stored one
            output = original(*args, **kwargs)
            counts.computed += 1
            self._entries[key] = copy.deepcopy(output)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return output

        return call


def _input_key(kind: str, args: tuple, kwargs: dict) -> tuple | None:
    """The key of one call's arguments (positional by index, keywords by name), or None when one has no exact key."""
    named = [*enumerate(args), *sorted(kwargs.items())]
    parts = [(name, _value_key(value)) for name, value in named]
    if any(part is None for _, part in parts):
        return None
    return (kind, *parts)


def _value_key(value: Any) -> Hashable | None:
    if isinstance(value, torch.Tensor):
        data = value.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy()
        digest = hashlib.sha256(memoryview(data)).hexdigest()
        return ("tensor", tuple(value.shape), value.stride(), str(value.dtype), str(value.device), digest)
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, repr(value))
    return None
