"""TensorBoard event files of a run, read with TensorBoard's own EventAccumulator. Every folder under the run
dir that holds `events.out.tfevents.*` files is read (the layout is not assumed), and series are merged by tag."""
import logging
from dataclasses import dataclass, field
from pathlib import Path

EVENTS_GLOB = "**/events.out.tfevents.*"
SAMPLES_TAG = "samples/prior"
# scalars: every point; the rest: at most the last one per tag (0 would keep all)
GUIDANCE = {"scalars": 0, "images": 1, "histograms": 1, "compressedHistograms": 1, "tensors": 1, "audio": 1}


@dataclass
class Events:
    """Scalar series (tag -> [(step, wall time, value)]), the last prior-sample PNG, and a note on trouble."""
    scalars: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    samples_png: bytes | None = None
    note: str = ""


def read_events(run_dir: Path, images: bool = False) -> Events:
    """Every event file under `run_dir`; a missing, empty or half-written file gives what could be read."""
    folders = sorted({p.parent for p in run_dir.glob(EVENTS_GLOB) if p.is_file()})
    out = Events(note="" if folders else "no event files")
    for folder in folders:
        try:
            acc = accumulate(folder)
        except Exception as e:  # a file TensorBoard cannot parse at all: keep what the others hold
            out.note = f"events in {folder.name}/ unreadable ({type(e).__name__})"
            continue
        for tag in acc.Tags()["scalars"]:
            out.scalars.setdefault(tag, []).extend((e.step, e.wall_time, e.value) for e in acc.Scalars(tag))
        if images and SAMPLES_TAG in acc.Tags()["images"]:
            out.samples_png = acc.Images(SAMPLES_TAG)[-1].encoded_image_string
    for series in out.scalars.values():
        series.sort()
    if folders and not out.scalars and not out.note:
        out.note = "no scalars in the event files yet"
    return out


def fast_checksums() -> None:
    """Without TensorFlow, TensorBoard checks every record's masked CRC-32C in pure Python, about 2 s for one
    run's image records on this CPU; google-crc32c computes the same checksum in C (a test compares the two)."""
    try:
        import google_crc32c
        from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as stub
    except ImportError:  # TensorBoard's own, slower, checksum stays
        return
    if hasattr(stub, "masked_crc32c") and not getattr(stub.masked_crc32c, "fast", False):
        def masked_crc32c(data) -> int:
            x = google_crc32c.value(bytes(data))
            return stub.u32(((x >> 15) | stub.u32(x << 17)) + 0xA282EAD8)  # TensorBoard's masking
        masked_crc32c.fast = True
        stub.masked_crc32c = masked_crc32c


def accumulate(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fast_checksums()
    quiet = logging.getLogger("tensorboard")  # a truncated last record is expected of a killed run
    level, quiet.level = quiet.level, logging.ERROR
    try:
        acc = EventAccumulator(str(folder), size_guidance=GUIDANCE)
        acc.Reload()
    finally:
        quiet.setLevel(level)
    return acc
