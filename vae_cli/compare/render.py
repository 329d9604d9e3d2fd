"""A Table as aligned text, Markdown, CSV or JSON; the notes on runs that did not finish."""
import csv
import io
import json
import math

from vae_cli.compare.table import Row, Table, label

FORMATS = ("text", "markdown", "csv", "json")


def render(table: Table, fmt: str, limit: int | None = None) -> str:
    if fmt == "json":
        return json.dumps(as_records(table), indent=2) + "\n"
    if fmt == "csv":
        return as_csv(table)
    header = ["", *table.columns, "n", *table.metrics, "status"]
    body = [cells(table, row) for row in table.rows[:limit]]
    text = as_markdown(header, body) if fmt == "markdown" else aligned(header, body)
    return text + "".join(f"\n{line}" for line in notes(table, limit)) + "\n"


def cells(table: Table, row: Row) -> list[str]:
    stats = [number(m, *row.stats[m]) if m in row.stats else "" for m in table.metrics]
    return ["*" if row.best else "", *row.keys.values(), str(len(row.runs)), *stats, row.status]


def number(metric: str, mean: float, std: float | None) -> str:
    """4 significant digits for the mean, the std to the same decimals; steps whole, wall time as a clock."""
    if metric == "wall_s":
        return clock(mean) + ("" if std is None else f" ± {clock(std)}")
    if metric == "steps":
        return f"{mean:.0f}"  # its spread says only that some runs stopped early: the status column does
    whole = metric in ("ex/s",) or (metric.endswith("active_units") and mean.is_integer())
    places = 0 if whole else 1 if metric.endswith("active_units") else decimals(mean)
    return f"{mean:.{places}f}" + ("" if std is None else f" ± {std:.{places}f}")


def decimals(x: float) -> int:
    return 4 if x == 0 else min(4, max(0, 3 - math.floor(math.log10(abs(x)))))


def clock(seconds: float) -> str:
    """12.3s under a minute, else m:ss or h:mm:ss."""
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


def aligned(header: list[str], body: list[list[str]]) -> str:
    """Text columns left-aligned, numbers right-aligned, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    numeric = [all(is_number(r[i]) for r in body if r[i]) for i in range(len(header))]
    def line(r):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip()
    return "\n".join(line(r) for r in [header, *body])


def is_number(cell: str) -> bool:
    head = cell.split(" ± ")[0].replace(":", "").removesuffix("s")
    try:
        float(head)
        return True
    except ValueError:
        return False


def as_markdown(header: list[str], body: list[list[str]]) -> str:
    rows = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows)


def notes(table: Table, limit: int | None = None) -> list[str]:
    """One line per run that did not finish (its resume command or error) or whose events say little."""
    out = []
    for row in table.rows[:limit]:
        for run in row.runs:
            if remark(run):
                out.append(f"{run.status}: {label(row, run, table.folded)}: {remark(run)}")
    head = [f"sorted by {table.sort}" + (" (* best)" if any(r.best for r in table.rows) else "")] if table.sort else []
    folded = [f"n: runs folded into a row (mean ± std over {', '.join(table.folded)})"] if table.folded else []
    return head + folded + out


def remark(run) -> str:
    """The resume command or error of a run that did not finish, and what its events lack."""
    what = [run.detail] if run.status != "finished" and run.detail else []
    what += [run.events.note] if run.events.note and run.status != "failed" else []
    return "; ".join(what)


def as_records(table: Table) -> list[dict]:
    return [{"best": row.best, **row.keys, "n": len(row.runs), "status": row.status,
             "detail": "; ".join(remark(r) for r in row.runs if remark(r)),
             **{k: v for m in table.metrics for k, v in stat_fields(row, m).items()},
             "runs": [str(r.path) for r in row.runs]} for row in table.rows]


def stat_fields(row: Row, metric: str) -> dict:
    mean, std = row.stats.get(metric, (None, None))
    return {metric: mean, f"{metric}_std": std}


def as_csv(table: Table) -> str:
    records = as_records(table)
    out = io.StringIO()
    fields = ["best", *table.columns, "n", "status", "detail",
              *[f for m in table.metrics for f in (m, f"{m}_std")], "runs"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({**rec, "runs": ";".join(rec["runs"])})
    return out.getvalue()
