"""A short run on real colour photos: 64 px crops of the photos inside scikit-image's wheel, then pictures.

    pip install scikit-image                   # for this script only; not a vae-cli dependency
    python benchmarks/photo_samples.py --steps 3000 --out docs/images/photos_64px.png

Writes --n random square crops (96 to 256 px, resized to 64) of each photo into <dir>/<photo>/, trains
`vae-train dataset=folder model=conv likelihood=discretized_logistic` on them, then puts `vae-sample
mode=reconstruct` (test image | reconstruction pairs) and `mode=prior` (mixture means) side by side in --out.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "stereo_motorcycle"]


def photos() -> dict[str, np.ndarray]:
    import skimage.data

    out = {}
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        out[name] = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)
    return out


def write_crops(folder: Path, per_photo: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, img in photos().items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        h, w = img.shape[:2]
        for i in range(per_photo):
            side = int(rng.integers(96, min(256, h, w) + 1))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(img[top:top + side, left:left + side, :3])
            crop.resize((64, 64), Image.BILINEAR).save(folder / name / f"{i:05d}.png")


def tool(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / args[0]), *args[1:]], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-photo", type=int, default=400)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=Path("docs/images/photos_64px.png"))
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "vae-photo-crops")
    args, extra = ap.parse_known_args()
    if not args.dir.exists():
        write_crops(args.dir, args.per_photo)
    run = args.dir.parent / "vae-photo-run"
    tool("vae-train", "dataset=folder", f"dataset.path={args.dir}", "model=conv", "likelihood=discretized_logistic",
         "latent_dim=64", f"max_steps={args.steps}", "trainer.batch_size=32", f"hydra.run.dir={run}", *extra)
    tool("vae-sample", f"ckpt={run}", "mode=reconstruct", f"out={run / 'pics'}")
    tool("vae-sample", f"ckpt={run}", "mode=prior", "mode.num=32", f"out={run / 'pics'}")
    left, right = (Image.open(run / "pics" / f"{n}.png").convert("RGB") for n in ("reconstruct", "prior"))
    sheet = Image.new("RGB", (left.width + right.width + 16, max(left.height, right.height)), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + 16, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}: reconstructions (left, test image | reconstruction), prior samples (right)")


if __name__ == "__main__":
    main()
