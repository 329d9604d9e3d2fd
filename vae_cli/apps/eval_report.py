"""Parts of vae-eval's report: the rows of the collapse and sample-quality scores (each with the way that is
better), which named setting ran (vae_cli/eval_configs/preset/), the paper-grade command with its extrapolated
time, and the KL-per-dim bar chart."""
import logging
import math
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("vae_cli")
PRESETS = ("paper", "quick")


def number(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "n/a"


def of(n: int | None, d: int | None) -> str:
    return "n/a" if n is None else f"{n} of {d}"


def collapse_rows(c: dict) -> list[tuple[str, str, str]]:
    """Two criteria under their own names and thresholds, I(x;z), the verdict, and per layer for hierarchies."""
    d, thr = c["num_dims"], c["kl_threshold"]
    rows = [("active units", f"{of(c['active_units'], d)}  (Var_x E[z_j|x] > {c['active_units_threshold']:g})",
             "more: more dims in use")]
    if c["kl_per_dim"] is not None:
        rows.append((f"dims with KL >= {thr:g}", f"{of(d - len(c['collapsed_dims']), d)}  (mean KL per dim, nats)",
                     "more: fewer collapsed dims"))
    rows += [("I(x;z)", "n/a" if c["mutual_information"] is None else f"{c['mutual_information']:.3f} nats  (at "
              f"most log N = {c['mutual_information_max']:.3f})", "higher: z says more about x"),
             ("collapse", c["verdict"], "")]
    for layer in c.get("per_layer") or []:  # hierarchies: z_1 (next to x) ... z_L
        kl = "n/a" if layer["kl"] is None else f"{layer['kl']:.3f} nats"
        au = "n/a" if layer["active_units"] is None else f"{layer['active_units']}/{layer['dims']} active"
        rows.append((f"  layer z_{layer['layer']}", f"{layer['dims']} dims, KL {kl}, {au}", ""))
    return rows


def quality_rows(q: dict) -> list[tuple[str, str, str]]:
    """Classifier-feature scores of prior samples against test images, each with the way that is better."""
    k = f"{q['num_samples']} each, k={q['nearest_k']}"
    return [("classifier FD", f"{q['classifier_fd']:.3f}  (NOT Inception FID)", "lower is better"),
            ("precision / recall", f"{number(q['precision'])} / {number(q['recall'])}  ({k})",
             "higher: samples look real / the data is covered"),
            ("density / coverage", f"{number(q['density'])} / {number(q['coverage'])}  ({k})",
             "higher (density may exceed 1)"),
            ("label entropy", f"{q['label_entropy']:.3f} nats  (of the mean label {q['marginal_label_entropy']:.3f}"
                              f", at most {q['max_label_entropy']:.3f})", "lower: confident; of the mean: higher")]


def preset_values(name: str) -> dict:
    """The keys a preset sets, e.g. {'k': 5000, 'num_examples': None, 'quality_samples': 10000}."""
    return OmegaConf.to_container(OmegaConf.load(files("vae_cli.eval_configs") / "preset" / f"{name}.yaml"))


def setting_name(cfg: DictConfig) -> str:
    """'paper' or 'quick' where the evaluation keys equal that preset's, else 'custom' (keys typed over one)."""
    return next((name for name in PRESETS if all(cfg.get(k) == v for k, v in preset_values(name).items())),
                "custom")


def paper_estimate_s(record: dict) -> float:
    """Seconds the paper setting would take at this run's speed: the IW-NLL scales with k x examples, the
    I(x;z) estimate with examples squared (extrapolated from this run's timings)."""
    paper, t = preset_values("paper"), record["wall_time_s"]
    n, total = record["num_examples"], record["split_size"]
    grow = (paper["num_examples"] or total) / n
    return t["iw_nll_s"] * grow * paper["k"] / record["k"] + t["collapse_s"] * grow**2 + t["quality_s"]


def setting_text(record: dict) -> str:
    """The table's last line: what ran, and how to get the paper-grade number where this was not it."""
    ran = f"k={record['k']} on {record['num_examples']} of {record['split_size']} {record['split']} images"
    if record["setting"] == "paper":
        return f"paper-grade (preset=paper): {ran}"
    minutes = paper_estimate_s(record) / 60
    return (f"{record['setting']}: {ran}; paper-grade: vae-eval ckpt={record['checkpoint']} preset=paper "
            f"(k=5000, every image: about {minutes:.0f} min here, extrapolated)")


def kl_figure(collapse: dict):
    """A bar per latent dim, sorted by KL (nats, log scale), with the collapse threshold as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims, kl = zip(*collapse["kl_per_dim_sorted"])
    threshold = collapse["kl_threshold"]
    floor = threshold / 10  # dims far below the threshold are drawn at this height, so every bar shows
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.25 * len(kl)), 20.0), 4.0), dpi=100)
    colours = ["tab:blue" if v >= threshold else "tab:grey" for v in kl]
    ax.bar(range(len(kl)), [max(v, floor) for v in kl], color=colours)
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"kl_threshold = {threshold:g} nats: grey bars "
                                                                 f"are under it (collapsed)")
    ax.set_yscale("log")
    step = max(1, len(kl) // 64)
    ax.set_xticks(range(0, len(kl), step), [f"z{j}" for j in dims[::step]], rotation=90, fontsize=8)
    ax.set(xlabel="latent dim, sorted by KL", ylabel="mean KL(q(z_j|x) || p(z_j))  [nats]",
           title=f"KL per latent dim ({len(kl)} dims; higher = the dim carries more information)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def write_kl_chart(path: Path, collapse: dict | None):
    """kl_per_dim.png where the posterior has a per-dim KL (`collapse`: the report's collapse entry, None for a
    family without one) and matplotlib is installed; returns the figure (for TensorBoard) or None."""
    if collapse is None or collapse["kl_per_dim_sorted"] is None:
        return None
    try:
        fig = kl_figure(collapse)
    except ImportError:
        log.warning("kl_per_dim.png needs matplotlib: pip install 'vae-cli[plot]' (the KL per dim is in "
                    "metrics.json)")
        return None
    fig.savefig(path)
    return fig
