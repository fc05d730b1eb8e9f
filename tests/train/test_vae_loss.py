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


def _smoke_vae():
    from stepscope.train.build import build_vae_for
    from stepscope.train.config import SMOKE

    torch.manual_seed(0)
    return build_vae_for(SMOKE).eval()


def test_the_unclamped_decode_is_the_decode_before_its_clamp():
    from stepscope.train.vae import decode_unclamped

    vae = _smoke_vae()
    for frames in (1, 9):  # an image clip and a video (a first frame, then chunks of four)
        z = 3.0 * torch.randn(
            2, vae.config.z_dim, (frames - 1) // 4 + 1, 4, 4, generator=torch.Generator().manual_seed(1)
        )
        with torch.no_grad():
            raw = decode_unclamped(vae, z)
            decoded = vae.decode(z, return_dict=False)[0]
        assert (
            raw.shape
            == decoded.shape
            == (2, 3, frames, 4 * vae.spatial_compression_ratio, 4 * vae.spatial_compression_ratio)
        )
        torch.testing.assert_close(raw.clamp(-1.0, 1.0), decoded, rtol=1e-5, atol=1e-5)


def test_an_overshooting_decoder_still_gets_a_gradient():
    # The reason for the unclamped decode: where the decoder says 1 + ε for a pixel that should be −1, the clamped
    # output has no gradient, and training cannot move it (the trajectory ball lost in frames 1-3 of each chunk).
    from stepscope.train.vae import decode_unclamped

    vae = _smoke_vae()
    with torch.no_grad():
        vae.decoder.conv_out.bias.fill_(5.0)  # every output pixel far above 1
    z = torch.randn(1, vae.config.z_dim, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    side = 4 * vae.spatial_compression_ratio
    target = -torch.ones(1, 3, 9, side, side)
    clamped = latent_frame_mse(vae.decode(z, return_dict=False)[0], target)
    (through_clamp,) = torch.autograd.grad(clamped, vae.decoder.conv_out.bias)
    assert torch.count_nonzero(through_clamp) == 0
    unclamped = latent_frame_mse(decode_unclamped(vae, z), target)
    (without_clamp,) = torch.autograd.grad(unclamped, vae.decoder.conv_out.bias)
    assert torch.all(without_clamp > 0)
