"""The VAE's training loss weights every latent frame alike (frame 0 as much as each chunk of 4 frames)."""

import torch

from stepscope.train.vae import latent_frame_mse


def test_frame_zero_weighs_as_much_as_a_chunk_of_four():
    videos = torch.zeros(2, 3, 9, 4, 4)
    decoded = videos.clone()
    decoded[:, :, 0] = 1.0  # frame 0 wrong by 1: squared error 1 on 1 frame of 9
    decoded[:, :, 5:9] = 2.0  # the second chunk wrong by 2: squared error 4 on 4 frames
    # Latent frames: [0], [1..4], [5..8] -> per-frame means 1, 0, 4 -> (1 + 0 + 4) / 3.
    assert torch.isclose(latent_frame_mse(decoded, videos), torch.tensor(5.0 / 3.0))
    # A plain pixel mean would give (1 + 4·4) / 9: the weighting is what the test sees.
    assert not torch.isclose(torch.nn.functional.mse_loss(decoded, videos), torch.tensor(5.0 / 3.0))


def test_equal_errors_give_the_plain_mean():
    generator = torch.Generator().manual_seed(0)
    videos = torch.rand(1, 3, 17, 8, 8, generator=generator)
    decoded = videos + 0.5  # the same error in every frame
    assert torch.isclose(latent_frame_mse(decoded, videos), torch.tensor(0.25), rtol=1e-5)


def test_a_single_frame_clip_is_its_frames_mean():
    # The image mix codes single frames as 1-frame clips: one latent frame, no chunk after it (an empty chunk's
    # mean would be NaN and poison every step).
    videos = torch.zeros(3, 3, 1, 4, 4)
    decoded = videos + 0.5
    assert torch.isclose(latent_frame_mse(decoded, videos), torch.tensor(0.25))
