"""Pictures of a Table (matplotlib, headless, PNG): the rate-distortion plane with -ELBO iso-lines, the
val-ELBO curves on steps and on wall-clock, and the last prior-sample grids side by side."""
import io
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vae_cli.compare.runs import TRAINING
from vae_cli.compare.table import Table, label
from vae_cli.errors import UserError

DPI = 100
RD_SIZE, CURVES_SIZE, TILE = (8, 6), (13, 5), 2.5  # inches; a sample tile is TILE wide, plus its title


def write_plots(table: Table, folder: Path) -> list[Path]:
    """The pictures these runs allow; returns the paths written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create plot={folder}: {e.strerror or e}") from None
    made = []
    for name, draw in (("rate_distortion.png", rate_distortion), ("val_elbo.png", elbo_curves),
                       ("prior_samples.png", sample_grids)):
        fig = draw(table)
        if fig is not None:
            fig.savefig(folder / name, dpi=DPI)
            made.append(folder / name)
    return made


def colours(table: Table) -> list:
    cmap = colormaps["tab10" if len(table.rows) <= 10 else "viridis"]
    return [cmap(i if len(table.rows) <= 10 else i / max(1, len(table.rows) - 1)) for i in range(len(table.rows))]


def rate_distortion(table: Table) -> Figure | None:
    """Distortion D on x, rate R on y (Alemi et al. 2018), nats; the lines R + D = c are -ELBO = c. One point
    per run, a row's runs in one colour, the row's label at their mean."""
    rows = [(row, c, [(r.metrics["val/distortion"], r.metrics["val/rate"]) for r in row.runs
                      if {"val/rate", "val/distortion"} <= r.metrics.keys()]) for row, c in zip(table.rows, colours(table))]
    rows = [(row, c, points) for row, c, points in rows if points]
    if not rows:
        return None
    fig = Figure(figsize=RD_SIZE)
    ax = fig.add_subplot()
    for row, c, points in rows:
        ax.scatter(*zip(*points), color=c, s=30, zorder=3)
        centre = [sum(v) / len(points) for v in zip(*points)]
        ax.annotate(label(row), centre, xytext=(6, 6), textcoords="offset points", fontsize=8, zorder=4)
    ax.margins(0.15)
    iso_lines(ax)
    ax.set(xlabel="distortion D = -E log p(x|z)  (nats, final val)", ylabel="rate R = KL(q(z|x) || p(z))  (nats)",
           title="rate-distortion plane; dashed: R + D = -ELBO (nats)")
    ax.grid(alpha=0.3)
    return fig


def iso_lines(ax) -> None:
    """Dashed lines R + D = c over the current view, each labelled with its -ELBO."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    ax.set_autoscale_on(False)
    for c in MaxNLocator(6).tick_values(x0 + y0, x1 + y1):
        lo, hi = max(x0, c - y1), min(x1, c - y0)  # the D range where R = c - D is in view
        if lo >= hi:
            continue
        ax.plot([lo, hi], [c - lo, c - hi], ls="--", lw=0.8, color="0.6", zorder=1)
        ax.text((lo + hi) / 2, c - (lo + hi) / 2, f"{c:g}", fontsize=7, color="0.4", ha="center",
                bbox={"fc": "white", "ec": "none", "pad": 0.5})


def elbo_curves(table: Table) -> Figure | None:
    series = [(row, run, c, run.events.scalars.get("val/elbo")) for row, c in zip(table.rows, colours(table))
              for run in row.runs]
    series = [s for s in series if s[3]]
    if not series:
        return None
    fig = Figure(figsize=CURVES_SIZE, layout="constrained")
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    named = set()
    for row, run, c, points in series:
        start = min(w for tag, s in run.events.scalars.items() if tag.startswith(TRAINING) for _, w, _ in s)
        name = None if id(row) in named else label(row, run=None)
        named.add(id(row))
        by_step.plot([s for s, _, _ in points], [v for _, _, v in points], color=c, marker=".", label=name)
        by_time.plot([w - start for _, w, _ in points], [v for _, _, v in points], color=c, marker=".")
    by_step.set(xlabel="step", ylabel="val ELBO (nats)", title="validation ELBO by step")
    by_time.set(xlabel="wall-clock since the run's first event (s)", title="validation ELBO by wall-clock")
    by_step.legend(fontsize=7)
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    return fig


def sample_grids(table: Table) -> Figure | None:
    """The last `samples/prior` image of every run, titled with its label."""
    import matplotlib.image

    tiles = [(label(row, run, table.folded), run.events.samples_png) for row in table.rows for run in row.runs
             if run.events.samples_png]
    if not tiles:
        return None
    images = [matplotlib.image.imread(io.BytesIO(png), format="png") for _, png in tiles]
    aspect = images[0].shape[0] / images[0].shape[1]  # (H, W, C): every run draws the same grid shape
    cols = min(len(tiles), 5)
    rows = -(-len(tiles) // cols)
    fig = Figure(figsize=(TILE * cols, (TILE * aspect + 0.35) * rows), layout="constrained")
    for ax, (name, _), image in zip(fig.subplots(rows, cols, squeeze=False).flat, tiles, images):
        ax.imshow(image, cmap="gray")
        ax.set_title(name, fontsize=8)
    for ax in fig.axes:
        ax.set_axis_off()
    return fig
