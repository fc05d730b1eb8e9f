"""Can the VAE learn frames 1-3 of a chunk? Fine-tune it on 4 trajectory validation videos on the CPU and print,
every 25 steps, the largest per-frame error (0-255) of frames 0-5 and whether each reconstruction passes.

    PYTHONPATH=backend python benchmarks/results/2026-12-07-vae/clamp_overfit.py VAE_DIR MODE STEPS

MODE: `plain` (the loss through diffusers' clamped decode, as trained until 2026-12-07), `weighted` (the same with
pixels that change between frames weighted 31×), `raw` (the loss on the decode before its clamp).
"""

import sys
import time

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from stepscope.train.config import FULL
from stepscope.train.data import model_range
from stepscope.train.evaluate import split_tasks
from stepscope.train.vae import decode_unclamped, latent_frame_mse

torch.manual_seed(0)
torch.set_num_threads(2)
vae_dir, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
vae = AutoencoderKLWan.from_pretrained(vae_dir).train()
tasks = split_tasks(FULL, "trajectory", "validation", 12)[:4]
x = model_range(torch.from_numpy(np.stack([t.ground_truth() for t in tasks])))  # (N, 3, T, H, W)
changed = (x[:, :, 1:] - x[:, :, :-1]).abs().amax(1, keepdim=True) > 0
moving = torch.zeros_like(x[:, :1], dtype=torch.bool)
moving[:, :, 1:] |= changed
moving[:, :, :-1] |= changed
weight = 1 + 30 * moving.float()
opt = torch.optim.AdamW(vae.parameters(), lr=3e-4)


def report():
    with torch.no_grad():
        vae.eval()
        dec = vae.decode(vae.encode(x).latent_dist.mode(), return_dict=False)[0]
        vae.train()
    err = ((dec - x).abs().amax(1) * 127.5).amax((2, 3)).amax(0)[:6].round().tolist()
    videos = ((dec.clamp(-1, 1).permute(0, 2, 3, 4, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    return err, [t.score(v).passed for t, v in zip(tasks, videos, strict=True)]


print("start", report(), flush=True)
started = time.time()
for step in range(steps):
    posterior = vae.encode(x).latent_dist
    z = posterior.sample()
    if mode == "raw":
        loss = latent_frame_mse(decode_unclamped(vae, z), x)
    else:
        dec = vae.decode(z, return_dict=False)[0]
        loss = latent_frame_mse(dec, x) if mode == "plain" else ((dec - x).pow(2) * weight).mean() / weight.mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if (step + 1) % 25 == 0:
        print(step + 1, f"{time.time() - started:.0f}s", float(loss.detach()), report(), flush=True)
