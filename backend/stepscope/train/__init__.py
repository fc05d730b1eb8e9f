"""Train the small reasoning Wan model (`mini-reasoner`) from scratch on the task suite, and evaluate it.

python -m stepscope.train fit --config full --device cuda --out runs/mini-reasoner
python -m stepscope.train evaluate --model runs/mini-reasoner/pipeline --device cuda --n 500

Stage 1 trains a small AutoencoderKLWan on task videos; stage 2 trains a WanTransformer3DModel
(image-to-video, 36 input channels) with flow matching on the VAE's latents. The result is a
diffusers WanImageToVideoPipeline directory. docs/training.md has the sizes, data and objective.
"""
