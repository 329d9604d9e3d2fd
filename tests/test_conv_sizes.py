"""model=conv fits 28, 32, 64 and 128 px, grey or colour: its stride-2 stages follow the image size."""
import pytest
import torch

from conftest import make_cfg
from vae_cli.build import build_model
from vae_cli.errors import ConfigError
from vae_cli.models.layers import conv_stages


@pytest.mark.parametrize("side, stages", [(28, 2), (32, 3), (64, 4), (128, 5), (48, 3), (8, 1)])
def test_stages_halve_down_to_a_4_to_8_px_map(side, stages):
    assert conv_stages((3, side, side), "model=conv") == stages
    assert 4 <= side / 2**stages <= 8


@pytest.mark.parametrize("side", [28, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("likelihood", ["gaussian", "discretized_logistic"])
def test_conv_builds_and_decodes_each_size(side, channels, likelihood):
    cfg = make_cfg("model=conv", f"likelihood={likelihood}", "likelihood.num_mixtures=2" if likelihood !=
                   "gaussian" else "likelihood.sigma=0.1", "model.encoder.base_channels=4",
                   "model.decoder.base_channels=4", "latent_dim=3")
    vae = build_model(cfg, (channels, side, side))
    x = torch.randint(0, 256, (2, channels, side, side), dtype=torch.uint8)
    x = vae.likelihood.prepare(x)
    p_x = vae(x)
    assert vae.likelihood.mean(p_x).shape == (2, channels, side, side)
    assert p_x.log_prob(x).shape == (2,)
    assert len([m for m in vae.encoder.net if isinstance(m, torch.nn.Conv2d)]) == conv_stages(x.shape[1:], "")


@pytest.mark.parametrize("shape", [(3, 30, 30), (1, 36, 36), (3, 17, 17), (3, 6, 6)])
def test_an_unfit_size_is_one_line_naming_sizes_that_work(shape):
    with pytest.raises(ConfigError) as e:
        build_model(make_cfg("model=conv", "likelihood=gaussian"), shape)
    message = str(e.value)
    assert f"model=conv cannot fit {shape[1]}x{shape[2]} images" in message and "\n" not in message
    assert all(f" {s}," in message for s in (28, 32, 64, 128)) and "dataset.image_size" in message
