"""vae-sample's pictures are readable: grids drawn at >= 84 px per image with the pixels kept, labels above
the columns and beside the rows, traverse rows ordered by their KL, the latent manifold on z_1 / z_2 axes."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from conftest import make_cfg
from vae_cli.apps.figures import CELL_PX, FONT_PX, grid
from vae_cli.apps.latent_modes import manifold_figure, top_layer_order
from vae_cli.build import build_model
from vae_cli.data import fake_images
from vae_cli.objectives.elbo import ELBO

TOP = FONT_PX + 8  # the column-label band


def images(n: int, h: int = 28, w: int = 28) -> torch.Tensor:
    return torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(n))


def dark(region: torch.Tensor) -> bool:
    """Some text was drawn here: a pixel well below white."""
    return bool((region < 0.5).any())


def test_grid_is_make_grid_scaled_to_cell_px_with_every_pixel_kept():
    x = images(6)
    big = grid(x, 3)
    k = -(-CELL_PX // 30)  # 28 px + padding 2 -> 3x
    assert k == 3 and tuple(big.shape) == (3, k * (2 * 30 + 2), k * (3 * 30 + 2))
    want = F.interpolate(make_grid(x, nrow=3, padding=2, pad_value=1.0)[None], scale_factor=k, mode="nearest")[0]
    assert torch.equal(big, want)
    assert tuple(grid(images(4, 64, 64), 2).shape) == (3, 2 * (2 * 66 + 2), 2 * (2 * 66 + 2))  # 66 px -> 2x
    assert tuple(grid(images(4, 96, 96), 2).shape) == (3, 2 * 98 + 2, 2 * 98 + 2)  # already large: 1x


def test_labels_sit_above_each_column_and_left_of_each_row():
    x = images(6)
    plain = grid(x, 3)
    out = grid(x, 3, col_labels=["one", "two", "three"], row_labels=["row zero", "r1"])
    left = out.shape[2] - plain.shape[2]
    assert out.shape[1] == plain.shape[1] + TOP and left > 8
    assert torch.allclose(out[:, TOP:, left:], plain, atol=1 / 255)  # the grid itself is untouched (8-bit)
    for j in range(3):  # text in the band above each column
        assert dark(out[:, :TOP, left + 6 + j * 90 : left + (j + 1) * 90])
    for i in range(2):  # text left of each row, within that row's height
        assert dark(out[:, TOP + 6 + i * 90 : TOP + (i + 1) * 90, : left - 2])
    assert not dark(out[:, TOP + 6 + 2 * 90 :, : left - 2])  # nothing beside a row that does not exist


@torch.no_grad()
def test_traverse_rows_follow_the_closed_form_kl_per_dim():
    """The row labels' numbers: the split-mean closed-form KL per dim, rows in decreasing order."""
    cfg = make_cfg("trainer=debug", "latent_dim=6", "model.encoder.hidden_sizes=[16]",
                   "model.decoder.hidden_sizes=[16]")
    data = fake_images(num_test=40)
    model = build_model(cfg, data.image_shape).eval()
    x = model.likelihood.prepare(data.test.images)
    order, score, name = top_layer_order(model, x, data.test.labels)
    assert name == "KL"
    assert torch.allclose(score, ELBO()(model, x, 0)["kl_per_dim"], rtol=1e-5)
    assert torch.equal(order, torch.argsort(score, descending=True))


def test_latent_manifold_has_z_axes_ticked_at_the_grid_values():
    pytest.importorskip("matplotlib")
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 6))
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")
    fig = manifold_figure(images(36), torch.stack([z1, z2], dim=-1).flatten(0, 1), 6)  # as Family.edit_grid
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z_1", "z_2")
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{float(v):+.2f}" for v in q]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{float(v):+.2f}" for v in q.flip(0)]  # top: high z_2
    assert [t for t in ax.get_xticks()] == [(i + 0.5) * 28 for i in range(6)]  # at the cell centres
    import matplotlib.pyplot as plt

    plt.close(fig)
