"""Runs -> one row per group: the keys that differ between runs, seeds folded into mean ± std and n, sorted."""
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from vae_cli.compare.runs import EVAL_KEYS, Run
from vae_cli.errors import UserError

METRICS = ["val/best_elbo", "val/elbo", "val/rate", "val/distortion", "val/bits_per_dim", "val/active_units",
           "val/loss", "steps", "wall_s", "ex/s"]
HIGHER_IS_BETTER = {"best_elbo", "elbo", "active_units", "steps", "ex/s"}  # by the name's last part
DEFAULT_SORT = ("val/best_elbo", "val/loss")  # the first one that some run has (the VQ-VAE has no ELBO)


@dataclass
class Row:
    keys: dict[str, str]
    runs: list[Run]
    stats: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # metric -> (mean, std or None)
    best: bool = False

    @property
    def status(self) -> str:
        counts = Counter(r.status for r in self.runs)
        return next(iter(counts)) if len(counts) == 1 else ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))


@dataclass
class Table:
    columns: list[str]  # the keys rows differ by
    folded: list[str]  # varied keys folded into n (seed by default)
    metrics: list[str]
    rows: list[Row]
    sort: str | None


def varied_keys(runs: list[Run]) -> list[str]:
    """Keys with more than one known value. Leaves under a varied group (model.* when model differs) are left
    to that group's column unless typed on the command line. Command-line order first, then by name."""
    values: dict[str, set] = {}
    for run in runs:
        for k, v in run.keys.items():
            values.setdefault(k, set()).add(v)
    varied = {k for k, vs in values.items() if len(vs) > 1}
    typed = list(dict.fromkeys(k for run in runs for k in run.typed))
    covered = {k for k in varied if k.split(".")[0] in varied and k not in typed and "." in k}
    varied -= covered
    return [k for k in typed if k in varied] + sorted(varied - set(typed))


def build_table(runs: list[Run], sort: str | None = None, group_by: list[str] | None = None,
                ignore: list[str] | None = None) -> Table:
    varied = varied_keys(runs)
    known = {k for run in runs for k in run.keys}
    for k in (group_by or []) + (ignore or []):
        if k not in known:
            raise UserError(f"'{k}' is not a key of these runs; keys that differ: {', '.join(varied) or 'none'}")
    ignore = ["seed"] if ignore is None else ignore
    columns = group_by if group_by is not None else [k for k in varied if k not in ignore]
    rows = group_rows(runs, columns)
    metrics = shown_metrics(runs)
    sort = pick_sort(sort, metrics)
    rows = sort_rows(rows, sort)
    return Table(columns, [k for k in varied if k not in columns], metrics, rows, sort)


def group_rows(runs: list[Run], columns: list[str]) -> list[Row]:
    groups: dict[tuple, Row] = {}
    for run in runs:
        key = tuple(run.keys.get(k, "") for k in columns)
        groups.setdefault(key, Row(dict(zip(columns, key)), [])).runs.append(run)
    for row in groups.values():
        row.stats = aggregate(row.runs)
    return list(groups.values())


def aggregate(runs: list[Run]) -> dict[str, tuple[float, float | None]]:
    """Mean and sample standard deviation (n - 1) over the runs that have each metric; std None when n < 2."""
    out = {}
    for m in {m for r in runs for m in r.metrics}:
        vals = [r.metrics[m] for r in runs if m in r.metrics and math.isfinite(r.metrics[m])]
        if vals:
            out[m] = (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None)
    return out


def shown_metrics(runs: list[Run]) -> list[str]:
    """The metrics some run has; val/loss only beside a run without an ELBO (the VQ-VAE); test/* after."""
    have = {m for r in runs for m, v in r.metrics.items() if math.isfinite(v)}  # NaN: not applicable
    loss_needed = any("val/loss" in r.metrics and "val/elbo" not in r.metrics for r in runs)
    base = [m for m in METRICS if m in have and (m != "val/loss" or loss_needed)]
    evals = list(EVAL_KEYS.values())  # test/iw_nll, test/elbo, ... in vae-eval's order
    return base + sorted((m for m in have if m not in METRICS), key=lambda m: (evals.index(m.split("/")[-1])
                                                                             if m.split("/")[-1] in evals else 99, m))


def pick_sort(sort: str | None, metrics: list[str]) -> str | None:
    if sort is None:
        return next((m for m in DEFAULT_SORT if m in metrics), None)
    if sort not in metrics:
        raise UserError(f"sort={sort}: not a metric of these runs; choose one of {', '.join(metrics) or 'none'}")
    return sort


def higher_is_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] in HIGHER_IS_BETTER


def sort_rows(rows: list[Row], sort: str | None) -> list[Row]:
    """Best first; rows without the metric last, in the order found. The first row with it is marked best."""
    if sort is None:
        return rows
    sign = -1 if higher_is_better(sort) else 1
    rows = sorted(rows, key=lambda r: (sort not in r.stats, sign * r.stats[sort][0] if sort in r.stats else 0))
    if rows and sort in rows[0].stats:
        rows[0].best = True
    return rows


def label(row: Row, run: Run | None = None, folded: list[str] = ()) -> str:
    """`beta=4` (plus `seed=1` for one run of a group); the run dir's name when no key differs."""
    if any(v == "" for v in row.keys.values()):  # a run that lacks a key (a job refused at start-up)
        return (run or row.runs[0]).path.name
    parts = [f"{k}={v}" for k, v in row.keys.items()]
    if run is not None:
        parts += [f"{k}={run.keys[k]}" for k in folded if k in run.keys]
    return " ".join(parts) or (run or row.runs[0]).path.name
