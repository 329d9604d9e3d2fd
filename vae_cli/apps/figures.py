"""Readable pictures for vae-sample: image grids (torchvision's make_grid) drawn large enough to judge a digit,
with labels above the columns and left of the rows (Pillow), and matplotlib figures turned into image tensors."""
import io

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid

from vae_cli.errors import UserError

CELL_PX = 84  # the smallest drawn size of one grid cell: a 28-px MNIST digit at 3x, nearest-neighbour
PAD = 2  # make_grid's padding between images, before zooming
FONT_PX = 14


def zoom_for(cell: int) -> int:
    """The integer scale that draws a `cell`-px grid cell at CELL_PX px or more."""
    return max(1, -(-CELL_PX // cell))


def font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_PX)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def grid(images: torch.Tensor, nrow: int, col_labels: list[str] | None = None,
         row_labels: list[str] | None = None) -> torch.Tensor:
    """images (N, C, H, W) in [0, 1] -> (3, H', W') in [0, 1]: `nrow` images per row, each cell scaled up by an
    integer factor to >= CELL_PX px, labels centred above their column and right-aligned left of their row."""
    picture = make_grid(images.float().cpu(), nrow=nrow, padding=PAD, pad_value=1.0)
    h, w = images.shape[-2:]
    k = zoom_for(max(h, w) + PAD)
    picture = F.interpolate(picture[None], scale_factor=k, mode="nearest")[0]
    if not col_labels and not row_labels:
        return picture
    return draw_labels(picture, (h * k, w * k), PAD * k, col_labels or [], row_labels or [])


def draw_labels(picture: torch.Tensor, image_px: tuple[int, int], pad: int, col_labels: list[str],
                row_labels: list[str]) -> torch.Tensor:
    """The zoomed grid (3, H, W) of images `image_px` (h, w) apart by `pad` px on a white canvas, with a label
    band above the columns and, for row labels, one to the left of the rows."""
    from PIL import Image, ImageDraw

    (h, w), face = image_px, font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max((measure.textlength(t, font=face) for t in row_labels), default=-8)) + 8
    top = FONT_PX + 8 if col_labels else 0
    rgb = (picture.expand(3, -1, -1) * 255).round().byte().permute(1, 2, 0).numpy()
    canvas = Image.new("RGB", (rgb.shape[1] + left, rgb.shape[0] + top), "white")
    canvas.paste(Image.fromarray(rgb), (left, top))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(col_labels):
        draw.text((left + pad + j * (w + pad) + (w - draw.textlength(text, font=face)) / 2, 3), text,
                  fill="black", font=face)
    for i, text in enumerate(row_labels):
        draw.text((left - 4 - draw.textlength(text, font=face), top + pad + i * (h + pad) + (h - FONT_PX) / 2),
                  text, fill="black", font=face)
    return pil_to_tensor(canvas).float() / 255.0


def pyplot(who: str):
    """matplotlib.pyplot on the Agg backend, or one UserError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"{who} draws with matplotlib: pip install 'vae-cli[plot]'") from None
    return plt


def figure_tensor(fig) -> torch.Tensor:
    """A matplotlib figure rendered to an image tensor (3, H, W) in [0, 1]; the figure is closed."""
    from PIL import Image
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    return pil_to_tensor(Image.open(buf).convert("RGB")).float() / 255.0
