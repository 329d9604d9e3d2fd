"""Finding run dirs under the given paths and reading each one: its keys (.hydra/ or the sweep's job record),
status, TensorBoard scalars and vae-eval's metrics.json."""
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vae_cli.compare.events import Events, read_events
from vae_cli.compare.status import run_status
from vae_cli.errors import UserError

CONFIG = Path(".hydra") / "config.yaml"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
TRAINING = ("train/", "val/")  # vae-eval adds test/... to the same events, later: not training time
HOW_STARTED = {"resume"}  # keys that say how a run was started, not what it trains
EVAL_KEYS = {"iw_nll": "iw_nll", "elbo": "elbo", "bits_per_dim": "bits_per_dim", "collapse.active_units":
             "active_units", "sample_quality.classifier_fd": "classifier_fd", "nll_bound": "nll_bound",
             "bits_per_code": "bits_per_code"}  # metrics.json entry -> column name after `<split>/`


@dataclass
class Run:
    path: Path
    keys: dict[str, str] = field(default_factory=dict)  # config leaves and group choices, as text
    typed: list[str] = field(default_factory=list)  # the keys set on the command line, in order
    status: str = ""
    detail: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    events: Events = field(default_factory=Events)


def is_run_dir(d: Path) -> bool:
    """A training run that started (config and train.log) or a sweep job refused at start-up (error.txt)."""
    return ((d / CONFIG).is_file() and (d / "train.log").is_file()) or (d / "error.txt").is_file()


def find_runs(paths: list[str]) -> list[Path]:
    """Run dirs at or under each path, each once, in path order; one UserError when there is none."""
    found: dict[Path, None] = {}
    for given in paths:
        root = Path(given).expanduser()
        if not root.exists():
            raise UserError(f"{given}: no such file or directory")
        if is_run_dir(root):
            found[root.resolve()] = None
            continue
        marks = [p.parent.parent for p in root.rglob(str(CONFIG))] + [p.parent for p in root.rglob("error.txt")]
        for d in sorted(set(marks)):
            if is_run_dir(d):
                found.setdefault(d.resolve(), None)
    if not found:
        raise UserError(f"no run dir under {' '.join(paths)} (a run dir holds .hydra/config.yaml and train.log, "
                        f"or error.txt for a sweep job that failed at start-up)")
    return list(found)


def read_run(path: Path, images: bool = False) -> Run:
    run = Run(path)
    run.status, run.detail = run_status(path)
    run.keys, run.typed = run_keys(path)
    run.events = read_events(path, images)
    run.metrics = {**event_metrics(run.events.scalars), **eval_metrics(path)}
    return run


def run_keys(path: Path) -> tuple[dict[str, str], list[str]]:
    """(config leaves and group choices as text, the keys typed on the command line)."""
    overrides = load_yaml(path / ".hydra" / "overrides.yaml") or job_record(path).get("overrides") or []
    keys = flatten(load_yaml(path / CONFIG) or {})
    choices = ((load_yaml(path / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}).get("runtime", {}).get("choices")
    keys.update({g: str(o) for g, o in (choices or {}).items() if not g.startswith("hydra")})
    typed = []
    for o in overrides:
        k, _, v = o.partition("=")
        typed.append(k.lstrip("+~"))
        keys.setdefault(typed[-1], text(parse_value(v)))  # a job refused at start-up has no .hydra/: this is all
    return ({k: v for k, v in keys.items() if k not in HOW_STARTED},
            list(dict.fromkeys(k for k in typed if k not in HOW_STARTED)))


def load_yaml(path: Path):
    try:
        return yaml.load(path.read_text(), Loader=Loader)
    except (OSError, yaml.YAMLError):
        return None


def flatten(node, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict) and node:
        out = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: text(node)}


def text(value) -> str:
    """One spelling per value: 1.0 and 1 are the same beta; lists compact, as typed on a command line."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def parse_value(v: str):
    try:
        return yaml.load(v, Loader=Loader)
    except yaml.YAMLError:
        return v


def job_record(path: Path) -> dict:
    """The sweep's record of this job (<sweep dir>/.job-N.json), for a job that left no .hydra/."""
    for rec in path.parent.glob(".job-*.json"):
        try:
            data = json.loads(rec.read_text())
        except (OSError, ValueError):
            continue
        if Path(data.get("dir", "")).resolve() == path:
            return data
    return {}


def event_metrics(scalars: dict) -> dict[str, float]:
    """Final and best val ELBO, the final rate, distortion, bits/dim and active units, steps, wall time, ex/s."""
    out = {}
    for tag in ("val/elbo", "val/rate", "val/distortion", "val/bits_per_dim", "val/active_units", "val/loss"):
        if scalars.get(tag):
            out[tag] = scalars[tag][-1][2]
    if scalars.get("val/elbo"):
        out["val/best_elbo"] = max(v for _, _, v in scalars["val/elbo"])
    points = [p for tag, series in scalars.items() if tag.startswith(TRAINING) for p in series]
    if points:
        out["steps"] = max(s for s, _, _ in points)
        out["wall_s"] = max(w for _, w, _ in points) - min(w for _, w, _ in points)
    if scalars.get("train/examples_per_sec"):
        out["ex/s"] = statistics.median(v for _, _, v in scalars["train/examples_per_sec"])
    return out


def eval_metrics(path: Path) -> dict[str, float]:
    """vae-eval's metrics.json in the run dir (eval-best/ first, else the newest eval-*/), as `test/name`."""
    files = sorted(path.glob("eval-*/metrics.json"), key=lambda p: (p.parent.name != "eval-best", -p.stat().st_mtime))
    for f in files:
        try:
            record = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        flat = {k: v for k, v in ((k, dig(record, k)) for k in EVAL_KEYS) if isinstance(v, (int, float))}
        split = record.get("split", "test")
        prefix = "test" if split == "test" else f"eval_{split}"  # val/... names the training's validation
        return {f"{prefix}/{EVAL_KEYS[k]}": float(v) for k, v in flat.items()}
    return {}


def dig(record: dict, dotted: str):
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record
