"""Finding the images under a folder: torchvision ImageFolder's layout and extensions, read from disk once."""
import os
from dataclasses import dataclass
from pathlib import Path

# torchvision.datasets.folder.IMG_EXTENSIONS, plus what else Pillow commonly opens
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS) and not name.startswith(".")


def walk_images(root: Path):
    """Image files under `root` (as str paths: 20,000 Path objects cost a second), recursively, in a stable
    order; hidden files and folders are skipped. Symlinked folders are followed, each real folder once, so
    a link back up the tree (a cycle) ends instead of listing the same images hundreds of times."""
    seen = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if is_image_name(name):
                yield os.path.join(folder, name)


def has_images(root: Path) -> bool:
    """Whether an image file lies anywhere under `root`."""
    return root.is_dir() and next(walk_images(root), None) is not None


@dataclass
class Listing:
    files: list[str]      # every image file, sorted by class, then path
    labels: list[int]     # class index per file (0 for a flat folder)
    classes: list[str]    # class sub-folder names; [] for a flat folder
    stats: list[tuple]    # (relative path, size, mtime_ns) per file: the cache key's view of the folder


def list_folder(root: Path) -> Listing:
    """ImageFolder's layout: sub-folders holding images are classes (their images found recursively); a
    folder with images directly inside (or no such sub-folders) is flat: one unlabelled class."""
    top = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = any(p.is_file() and is_image_name(p.name) for p in root.iterdir())
    groups = [] if loose else [(d.name, list(walk_images(d))) for d in top]
    groups = [(name, files) for name, files in groups if files]
    if not groups:
        groups, classes = [("", list(walk_images(root)))], []
    else:
        classes = [name for name, _ in groups]
    files = [f for _, fs in groups for f in fs]
    labels = [i for i, (_, fs) in enumerate(groups) for _ in fs]
    return Listing(files, labels, classes, stats(root, files))


def stats(root: Path, files: list[str]) -> list[tuple]:
    """(path relative to root, size, mtime_ns) per file."""
    prefix = len(os.path.join(str(root), ""))
    out = []
    for f in files:
        st = os.stat(f)
        out.append((f[prefix:], st.st_size, st.st_mtime_ns))
    return out
