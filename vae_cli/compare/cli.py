"""`vae-compare PATH... [key=value ...]`: one table (and, with plot=DIR, pictures) for runs and sweeps.

A read-only tool, so no Hydra: it has no config to compose and must not make a run dir; Hydra would also read
a path such as `multirun/.../0_beta=1,seed=0` as an override (and its `,` as a sweep)."""
import difflib
import os
import sys
from pathlib import Path

from vae_cli.errors import UserError

KEYS = {"sort": "a metric column to sort by, best first (default: val/best_elbo)",
        "format": "text (default) | markdown | csv | json",
        "out": "write the table to this file instead of stdout",
        "plot": "write PNG pictures to this dir (rate-distortion plane, val-ELBO curves, prior samples)",
        "group_by": "comma-separated keys that make a row (default: every key that differs, but ignore=)",
        "ignore": "comma-separated keys folded into mean ± std and n (default: seed; empty: none)"}
USAGE = ("usage: vae-compare PATH... [key=value ...]\n\nPATH: a run dir, a sweep dir, or any folder above them "
         "(searched for run dirs).\n\nkeys:\n" + "\n".join(f"  {k:<9} {v}" for k, v in KEYS.items()) +
         "\n\nexample: vae-compare multirun/2026-11-22/05-00-30 sort=val/elbo plot=figs\n")


def parse(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """PATHs and key=value options. A word is an option when its key is one of KEYS and it is not an existing
    path (run dirs' names hold `=`); an unknown key that is no path either is an error naming the closest."""
    paths, options = [], {}
    for word in argv:
        key, eq, value = word.partition("=")
        if eq and key in KEYS and not Path(word).exists():
            options[key] = value
        elif eq and not Path(word).exists() and "/" not in key:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            raise UserError(f"unknown key '{key}'{hint} (keys: {', '.join(KEYS)}); or {word}: no such path")
        else:
            paths.append(word)
    if not paths:
        raise UserError("no PATH given: vae-compare PATH... (a run dir, a sweep dir or a folder above them)")
    fmt = options.get("format", "text")
    from vae_cli.compare.render import FORMATS

    if fmt not in FORMATS:
        raise UserError(f"format={fmt}: choose one of {', '.join(FORMATS)}")
    return paths, options


def names(value: str | None) -> list[str] | None:
    return None if value is None else [k.strip() for k in value.split(",") if k.strip()]


def compare(paths: list[str], options: dict[str, str]):
    """Find and read the runs; -> the Table (and the Runs, for pictures)."""
    from vae_cli.compare.runs import find_runs, read_run
    from vae_cli.compare.table import build_table

    runs = [read_run(p, images="plot" in options) for p in find_runs(paths)]
    table = build_table(runs, options.get("sort") or None, names(options.get("group_by")), names(options.get("ignore")))
    return table, runs


def run(argv: list[str]) -> None:
    paths, options = parse(argv)
    out = Path(options["out"]).expanduser() if options.get("out") else None
    if out is not None and out.is_dir():
        raise UserError(f"out={out} is a directory; give a file name for the table")
    table, runs = compare(paths, options)
    from vae_cli.compare.render import render

    text = render(table, options.get("format", "text"))
    if out is None:
        sys.stdout.write(text)
    else:
        write(out, text)
        print(f"vae-compare: wrote {out} ({len(table.rows)} rows)", file=sys.stderr)
    if options.get("plot"):
        try:
            from vae_cli.compare.plots import write_plots
        except ImportError as e:
            raise UserError(f"plot= needs matplotlib ({e}): pip install -e \".[plot]\"") from None

        for path in write_plots(table, Path(options["plot"]).expanduser()):
            print(f"vae-compare: wrote {path}", file=sys.stderr)


def write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise UserError(f"cannot write out={path}: {e.strerror or e}") from None


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return
    try:
        run(argv)
    except UserError as e:
        print(f"vae-compare: error: {e}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # `vae-compare ... | head`: no second error from the exit's flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def sweep_summary(sweep_dir: str, top: int = 3) -> str:
    """The best `top` rows of a sweep's table and the command that shows all of it (printed by vae-train -m)."""
    from vae_cli.compare.render import render

    table, _ = compare([sweep_dir], {})
    shown = f"best {top} of {len(table.rows)} rows" if len(table.rows) > top else f"{len(table.rows)} rows"
    return render(table, "text", limit=top) + f"{shown}; all of them, csv, pictures: vae-compare {sweep_dir} " \
                                                f"[format=csv] [plot=DIR]\n"
