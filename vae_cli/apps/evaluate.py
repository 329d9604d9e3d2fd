"""vae-eval: checkpoint in; metrics.json, a per-example CSV and TensorBoard entries out. Everything is
rebuilt from the checkpoint's stored config."""
import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from vae_cli.apps.common import check_out_dir, checkpoint_path, load, output_dir
from vae_cli.apps.eval_report import (collapse_rows, number, quality_rows, setting_name, setting_text,
                                     write_kl_chart)
from vae_cli.apps.evaluate_sweep import run_eval_sweep, settings, sweep_runs
from vae_cli.apps.prior import code_prior_path, load_code_prior
from vae_cli.data import prepare_fixed
from vae_cli.errors import ConfigError, UserError
from vae_cli.evaluation.collapse import collapse_report
from vae_cli.evaluation.codes import code_metrics
from vae_cli.evaluation.iw_nll import score_split, split_metrics
from vae_cli.evaluation.quality import sample_quality
from vae_cli.models.base import LatentKind, require_kind

log = logging.getLogger("vae_cli")
SPLITS = ("test", "val")
KINDS = frozenset(LatentKind)  # every family: density families get ELBO / IW-NLL / collapse; the VQ-VAE code numbers


def check_eval_config(cfg: DictConfig) -> None:
    for key in ("k", "k_chunk", "batch_size", "quality_samples"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]!r} must be a positive integer")
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r}; choose one of {', '.join(SPLITS)}")
    if cfg.num_examples is not None and (not isinstance(cfg.num_examples, int) or cfg.num_examples < 1):
        raise ConfigError(f"num_examples={cfg.num_examples!r} must be a positive integer or null (the whole split)")


def run_eval(cfg: DictConfig) -> dict | list[dict]:
    """Evaluate a checkpoint on a held-out split; returns (and writes) the metrics record. A sweep dir (or any
    folder above runs): every run in it, one after another; returns their records."""
    check_eval_config(cfg)
    runs = sweep_runs(cfg)
    return run_eval_sweep(cfg, runs, run_eval_one) if runs else run_eval_one(cfg)


def run_eval_one(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    path = checkpoint_path(cfg, "vae-eval")
    check_out_dir(output_dir(cfg, path, f"eval-{path.stem}")[0], "metrics.json")  # before any work is done
    ckpt, model, data, state, device = load(cfg, path, check=lambda family: require_kind("vae-eval", KINDS, family, ""))
    split = {"test": data.test, "val": data.val}[cfg.split]
    x = prepare_fixed(model.likelihood.prepare, split.images[: cfg.num_examples].to(device), cfg.seed)
    y = split.labels[: cfg.num_examples].to(device)
    setting = setting_name(cfg)
    log.info(f"{ckpt} (step {state['step']}): {cfg.split} split of {data.name}, {len(x)} of {len(split.images)} "
             f"examples, k={cfg.k}: " + ("preset=paper" if setting == "paper" else
                                         f"{setting} setting (preset=paper: the paper-grade number)"))
    head = {"setting": setting, "split_size": len(split.images), "checkpoint": str(ckpt), "step": int(state["step"]),
            "version": state.get("version"),
            "family": type(model).__name__, "latent_kind": model.latent_kind.value, "dataset": data.name,
            "split": cfg.split, "num_examples": len(x), "seed": cfg.seed, "data_noise": noise_name(model.likelihood),
            "likelihood": type(model.likelihood).__name__, "device": str(device), "settings": settings(cfg)}
    report = density_report if model.has_density else code_report  # the family's declared density
    report = report(cfg, ckpt, model, data, x, y, head)
    report.record["wall_time_s"]["total_s"] = time.perf_counter() - start
    write_eval(cfg, ckpt, report)
    return report.record


@dataclass
class Report:
    """What vae-eval writes for one checkpoint: metrics.json (`record`), report.txt (`table`), the per-example CSV
    (`columns`) and TensorBoard scalars and texts (`<split>/...` at the checkpoint's step)."""

    record: dict
    table: str = ""
    columns: dict = field(default_factory=dict)
    scalars: dict = field(default_factory=dict)
    texts: dict = field(default_factory=dict)


def density_report(cfg: DictConfig, ckpt: Path, model, data, x: torch.Tensor, y: torch.Tensor, head: dict) -> Report:
    """ELBO, IW-NLL, the collapse report and (quality=true) sample quality."""
    timing, tick = {}, time.perf_counter()
    scores, kl = score_split(model, x, y, cfg.k, cfg.batch_size, cfg.k_chunk, cfg.progress)
    timing["iw_nll_s"], tick = time.perf_counter() - tick, time.perf_counter()
    collapse = collapse_report(model, x, y, kl, cfg.batch_size, cfg.kl_threshold)
    timing["collapse_s"], tick = time.perf_counter() - tick, time.perf_counter()
    quality = sample_quality(model, data, x.device, cfg.get("data_dir"), cfg.quality_samples) if cfg.quality else None
    timing["quality_s"] = time.perf_counter() - tick
    record = {**head, "k": cfg.k, "k_chunk": cfg.k_chunk, "batch_size": cfg.batch_size,
              **split_metrics(scores, x[0].numel(), model.likelihood.discrete_offset),
              "collapse": collapse, "sample_quality": quality, "wall_time_s": timing}
    columns = {"label": y.tolist(), "elbo": scores.elbo.tolist(), "iw_nll": (-scores.log_px).tolist(),
               "distortion": scores.distortion.tolist(), "rate": scores.rate.tolist()}
    return Report(record, eval_table(record), columns, scalar_items(record),
                  {"collapse_report": collapse_text(collapse)})


def code_report(cfg: DictConfig, ckpt: Path, model, data, x: torch.Tensor, y: torch.Tensor, head: dict) -> Report:
    """A family without a density (VQ-VAE): distortion, perplexity, codes used; with prior.pt beside the
    checkpoint, the code prior's bits/code and the NLL bound. No ELBO, IW-NLL or collapse report."""
    net = fitted_code_prior(ckpt, model, x.device)
    metrics, distortion = code_metrics(model, x, cfg.batch_size, net)
    record = {**head, "batch_size": cfg.batch_size, **metrics,
              "code_prior": str(code_prior_path(ckpt)) if net is not None else None, "wall_time_s": {}}
    keys = ("distortion", "perplexity", "codes_used", "bits_per_code", "nll_bound", "bits_per_dim")
    return Report(record, code_table(record), {"label": y.tolist(), "distortion": distortion.tolist()},
                  {k: record[k] for k in keys if record[k] is not None})


def fitted_code_prior(ckpt: Path, model, device: torch.device):
    """The code prior beside `ckpt` if one was fitted on these weights; else None (a warning says why when the
    file is there but belongs to other weights: the codes metrics are still reported, without bits/code)."""
    if not code_prior_path(ckpt).is_file():
        return None
    try:
        return load_code_prior(ckpt, device, model)
    except UserError as e:
        log.warning(f"no bits/code: {e}")
        return None


def code_table(r: dict) -> str:
    prior = ("none beside the checkpoint: run vae-prior ckpt=... for bits/code" if r["bits_per_code"] is None else
             f"{r['bits_per_code']:.4f} bits/code (uniform: {r['uniform_bits_per_code']:.4f})")
    rows = [(f"{r['split']} examples", f"{r['num_examples']}  ({r['dataset']}, step {r['step']}, seed {r['seed']})"),
            ("distortion", f"{r['distortion']:.3f} nats  (-log p(x | z_q))"),
            ("codes used", f"{r['codes_used']} of {r['num_codes']}  (perplexity {r['perplexity']:.2f})"),
            ("code prior", prior)]
    if r["nll_bound"] is not None:
        rows.append(("NLL bound", f"{r['nll_bound']:.3f} nats  ({r['bits_per_dim']:.4f} bits/dim)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_columns(path: Path, columns: dict[str, list]) -> None:
    """index, then one column per entry (floats with 4 decimals)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *columns])
        for i, row in enumerate(zip(*columns.values())):
            w.writerow([i, *(f"{v:.4f}" if isinstance(v, float) else v for v in row)])


def finite_json(record: dict) -> str:
    """metrics.json: valid JSON always. A non-finite value is written as null, and `undefined` says why."""
    why = {}

    def clean(x, key):
        if isinstance(x, dict):
            return {k: clean(v, f"{key}.{k}" if key else k) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v, key) for v in x]
        if isinstance(x, float) and not math.isfinite(x):
            why[key] = ("undefined for a single example (num_examples=1)" if key == "iw_nll_stderr"
                        and record.get("num_examples") == 1 else f"not finite ({x})")
            return None
        return x
    out = clean(record, "")
    if why:
        out["undefined"] = why
    return json.dumps(out, indent=2, allow_nan=False) + "\n"


def noise_name(likelihood) -> str:
    return "dynamic binarization" if likelihood.binary else "uniform dequantization"


def write_eval(cfg: DictConfig, ckpt: Path, report: Report) -> None:
    """The one writer of vae-eval's outputs, for every family."""
    out, tb = output_dir(cfg, ckpt, f"eval-{ckpt.stem}")
    out.mkdir(parents=True, exist_ok=True)
    record, step, split = report.record, report.record["step"], report.record["split"]
    (out / "metrics.json").write_text(finite_json(record))
    if cfg.score:
        write_columns(out / f"scores-{split}.csv", report.columns)
    (out / "report.txt").write_text(report.table + "\n")
    chart = write_kl_chart(out / "kl_per_dim.png", record.get("collapse"))  # families with a per-dim KL
    with SummaryWriter(str(tb)) as writer:
        for name, value in report.scalars.items():
            writer.add_scalar(f"{split}/{name}", value, step)
        for name, text in {**report.texts, "metrics": "```\n" + report.table + "\n```"}.items():
            writer.add_text(f"{split}/{name}", text, step)
        if chart is not None:
            writer.add_figure(f"{split}/kl_per_dim", chart, step)
    print(report.table)
    log.info(f"wrote {out / 'metrics.json'}, {out / 'report.txt'}" + (f", {out / 'kl_per_dim.png'}" if chart else "") +
             (f" and {out / f'scores-{split}.csv'}" if cfg.score else ""))


def scalar_items(record: dict) -> dict[str, float]:
    keys = ("elbo", "distortion", "rate", "bits_per_dim", "iw_nll", "iw_nll_bits_per_dim", "iw_gap")
    out = {k: record[k] for k in keys}
    for k in ("active_units", "mutual_information"):
        if record["collapse"][k] is not None:
            out[k] = record["collapse"][k]
    for k, v in (record["sample_quality"] or {}).items():
        out[f"sample_quality/{k}"] = v
    return out


def collapse_text(c: dict) -> str:
    kl = c["kl_per_dim_sorted"]
    lines = [c["verdict"], "", f"active units (Var_x E[z_j|x] > {c['active_units_threshold']:g}): "
                               f"{c['active_units'] if c['active_units'] is not None else 'n/a'}"]
    lines.append("KL per dim (nats, sorted): " + ("not applicable (no closed-form per-dim KL)" if kl is None else
                                                   ", ".join(f"z{j}={v:.3f}" for j, v in kl)))
    return "\n\n".join(lines)


def eval_table(r: dict) -> str:
    rows = [(f"{r['split']} examples", f"{r['num_examples']} of {r['split_size']}  ({r['dataset']}, step "
                                        f"{r['step']}, seed {r['seed']}: {r['data_noise']})", ""),
            ("ELBO", f"{r['elbo']:.3f} nats  ({r['bits_per_dim']:.4f} bits/dim)", "higher is better"),
            ("  distortion / rate", f"{r['distortion']:.3f} / {r['rate']:.3f} nats",
             "distortion lower; rate = the KL paid"),
            (f"IW-NLL (k={r['k']})", f"{r['iw_nll']:.3f} ± {number(r['iw_nll_stderr'])} nats  "
                                     f"({r['iw_nll_bits_per_dim']:.4f} bits/dim)", "lower is better"),
            ("  -ELBO - IW-NLL", f"{r['iw_gap']:.3f} nats", "lower: a tighter ELBO"),
            *collapse_rows(r["collapse"]),
            *(quality_rows(r["sample_quality"]) if r["sample_quality"] is not None else []),
            ("setting", setting_text(r), "")]
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, better in rows if better)
    return "\n".join(f"{name:<{width}}  {value:<{value_width}}  {better}".rstrip() if better else
                     f"{name:<{width}}  {value}" for name, value, better in rows)
