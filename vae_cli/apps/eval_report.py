"""Parts of vae-eval's report: which named setting ran (vae_cli/eval_configs/preset/), the paper-grade command
with its extrapolated time, and the KL-per-dim bar chart."""
import logging
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("vae_cli")
PRESETS = ("paper", "quick")


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


def write_kl_chart(path: Path, collapse: dict):
    """kl_per_dim.png where the posterior has a per-dim KL and matplotlib is installed; returns the figure
    (for TensorBoard) or None."""
    if collapse["kl_per_dim_sorted"] is None:
        return None
    try:
        fig = kl_figure(collapse)
    except ImportError:
        log.warning("kl_per_dim.png needs matplotlib: pip install 'vae-cli[plot]' (the KL per dim is in "
                    "metrics.json)")
        return None
    fig.savefig(path)
    return fig
