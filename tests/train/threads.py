"""One intra-op torch thread for the training tests: their small ops run many times faster on a shared CPU than
with threads spinning against each other."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
