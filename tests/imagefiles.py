"""Real image files written with Pillow for the folder-dataset tests: class folders, mixed modes, bad files."""
from pathlib import Path

import numpy as np
from PIL import Image


def picture(seed: int, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    """A smooth seeded RGB picture (H, W, 3) uint8: a colour gradient and a square."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 256, 3)
    img = (base + np.stack([xx * 3, yy * 2, (xx + yy)], -1)) % 256
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    img[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def save_as(path: Path, rgb: np.ndarray, mode: str) -> None:
    """`rgb` saved in Pillow mode RGB, L, RGBA (half transparent) or P (palette)."""
    img = Image.fromarray(rgb)
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(128)
    elif mode in ("L", "P"):
        img = img.convert(mode) if mode == "L" else img.quantize(16)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def class_folders(root: Path, per_class: int = 12, classes=("cats", "dogs", "owls")) -> Path:
    """root/<class>/[sub/]i.png|jpg in mixed modes, one corrupt and one truncated PNG, a text file and an
    empty folder; -> root."""
    modes, exts = ("RGB", "L", "RGBA", "P"), (".png", ".png", ".png", ".png")
    for k, name in enumerate(classes):
        for i in range(per_class):
            sub = root / name / ("nested" if i % 3 == 0 else "")
            mode = modes[i % 4]
            ext = ".jpg" if mode in ("RGB", "L") and i % 2 == 0 else exts[i % 4]
            save_as(sub / f"{i:03d}{ext}", picture(100 * k + i), mode)
    (root / classes[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    good = (root / classes[1] / "001.png").read_bytes()
    (root / classes[1] / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / classes[2] / "notes.txt").write_text("not an image")
    (root / "empty_class").mkdir()
    return root


def flat_folder(root: Path, n: int = 30, size: tuple[int, int] = (32, 32)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(picture(i, size)).save(root / f"img_{i:03d}.png")
    return root


def celeba_layout(data_root: Path, parts=(0,) * 8 + (1,) * 2 + (2,) * 3) -> Path:
    """data_root/celeba/img_align_celeba/000001.jpg ... (178 x 218 like the aligned faces) and
    list_eval_partition.txt with `parts` (0 train, 1 val, 2 test); -> data_root."""
    folder = data_root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    lines = []
    for i, part in enumerate(parts, start=1):
        Image.fromarray(picture(i, (178, 218))).save(folder / "img_align_celeba" / f"{i:06d}.jpg", quality=95)
        lines.append(f"{i:06d}.jpg {part}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return data_root
