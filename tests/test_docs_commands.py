"""Every shell command in README.md and docs/*.md works as printed, so a renamed key or a removed option fails CI
instead of misleading a user.

Each fenced ```bash block is read command by command and run, in order within a page (vae-eval after the
vae-train that made its checkpoint), in a fresh directory per page with VAE_DATA_DIR set, through the real CLI
in a subprocess. The text shown to the user is never edited: the test appends a tiny budget to the command it
runs (BUDGET below: `max_steps=2` for vae-train, `k=2 num_examples=20 ...` for vae-eval, `--collect-only` for
pytest, small flags for the benchmarks); a later override wins in Hydra and in argparse.

A command CI cannot run ends with a comment holding `not-in-ci: <reason>` (SLURM, several GPUs, a download, a
server that stays up); those are listed, not run. A command that is a line of .ci/run (the set-up and the test
command) is what CI itself runs, so it is checked against .ci/run instead of being run inside the suite.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vae_cli.config_docs import generate, page_part

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```bash[^\n]*\n(.*?)^```", re.M | re.S)
NOT_IN_CI = re.compile(r"\bnot-in-ci:\s*(.*?)\s*$")
ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def ci_commands() -> set[tuple[str, ...]]:
    """The one-line commands of .ci/run (lines the shell cannot split alone, e.g. a multi-line python -c, skipped)."""
    out = set()
    for line in (REPO / ".ci" / "run").read_text().splitlines():
        try:
            out.add(tuple(shlex.split(line, comments=True)))
        except ValueError:
            continue
    return out


CI_LINES = ci_commands()
BIN = Path(sys.executable).parent
BUDGET = {  # the command's first words -> what the test appends to run it at a tiny budget
    "vae-train": ["max_steps=2"],
    "python -m vae_cli": ["max_steps=2"],
    "torchrun": ["max_steps=2"],
    "vae-eval": ["k=2", "num_examples=20", "quality_samples=200"],
    "vae-sample": [],
    "vae-prior": ["max_steps=2", "eval_every=2", "num_images=4"],
    "pytest": ["--collect-only", "-q"],
    "python benchmarks/throughput.py": ["--epochs", "1", "--rounds", "1", "--knob-steps", "0", "--iw-examples", "2",
                                        "--iw-k", "10", "--rss-epochs", "0"],
    "python benchmarks/contention.py": ["--steps", "10", "--rounds", "1"],
    "python -m vae_cli.config_docs": [],
    "vae-compare": [],
}
HYDRA_TOOLS = ("vae-train", "vae-eval", "vae-sample", "vae-prior")
RESUME_BUDGET = ["max_steps=4"]  # a resumed run trains 2 steps more than the run it continues


@dataclass
class Command:
    page: str
    line: int
    text: str  # as shown, without its comment
    words: tuple[str, ...]  # as the shell splits it
    not_in_ci: str | None  # the reason, for a command CI cannot run

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def page_commands(path: Path) -> list[Command]:
    """The commands of a page's ```bash blocks, in order; a trailing backslash continues a line."""
    text, out = path.read_text(), []
    for block in FENCE.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        pending, start = "", first
        for i, raw in enumerate(block.group(1).splitlines()):
            if not pending:
                start = first + i
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line, pending = pending + raw, ""
            words = shlex.split(line, comments=True)
            if not words:
                continue
            comment = line[len(line.split(" #")[0]):] if " #" in line else ""
            reason = NOT_IN_CI.search(comment)
            out.append(Command(path.relative_to(REPO).as_posix(), start, line.split(" #")[0].strip(),
                               tuple(words), reason.group(1) if reason else None))
    return out


ALL = {p.relative_to(REPO).as_posix(): page_commands(p) for p in PAGES}


def argv_of(cmd: Command) -> tuple[dict, list[str]]:
    """(environment additions, argv with the budget appended) of a command."""
    words, env = list(cmd.words), {}
    while words and ENV_WORD.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    line = " ".join(words)
    prefix = max((p for p in BUDGET if line == p or line.startswith(p + " ")), key=len, default=None)
    if prefix is None:
        raise AssertionError(f"{cmd}: no budget known for this command; add its first words to BUDGET")
    extra = RESUME_BUDGET if any(w.startswith("resume=") for w in words) else BUDGET[prefix]
    if "schedule=cyclical" in words:
        extra = ["max_steps=8"]  # its 4 cycles need 2 steps each
    flags = [i for i, w in enumerate(words) if w.startswith("--")]
    if words[0] in HYDRA_TOOLS and flags:  # Hydra's argparse takes no overrides after --cfg job once it saw some
        words[flags[0]:flags[0]] = extra
    else:
        words += extra
    if words[0] == "python":
        words[0] = sys.executable
    elif words[0] == "pytest":
        words[:1] = [sys.executable, "-m", "pytest"]
    elif words[0] == "torchrun":  # the same program; a venv sharing another's torch has no torchrun script
        words[:1] = [sys.executable, "-m", "torch.distributed.run"]
    return env, words


def workdir(tmp_path: Path) -> Path:
    """A fresh directory that holds what the documented commands name by a relative path."""
    for name in ("benchmarks", "scripts", "tests", "pyproject.toml", ".ci"):
        (tmp_path / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "docs", tmp_path / "docs")  # --write docs/configs.md must not touch the checkout
    return tmp_path


def runnable(page: str) -> list[Command]:
    return [c for c in ALL[page] if c.not_in_ci is None and c.words not in CI_LINES]


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in ALL if runnable(p)])
def test_every_documented_command_runs(page, tmp_path, data_dir):
    cwd, failures = workdir(tmp_path), []
    base = {**os.environ, "VAE_DATA_DIR": str(data_dir), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(REPO), "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for cmd in runnable(page):
        env, argv = argv_of(cmd)
        try:
            proc = subprocess.run(argv, cwd=cwd, env={**base, **env}, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=600)
        except OSError as e:
            failures.append(f"{cmd}\n  ran: {' '.join(argv)}\n  {e}")
            continue
        if proc.returncode != 0:
            failures.append(f"{cmd}\n  ran: {' '.join(argv)}\n  exit {proc.returncode}: "
                            f"{(proc.stderr or proc.stdout).strip()[-600:]}")
    assert not failures, "documented commands that fail as printed:\n" + "\n".join(failures)


def test_commands_ci_cannot_run_say_why_and_are_listed(capsys):
    skipped = [c for cmds in ALL.values() for c in cmds if c.not_in_ci is not None]
    assert skipped, "no not-in-ci marker found: the parser no longer reads them"
    for c in skipped:
        assert len(c.not_in_ci) >= 5, f"{c}: `not-in-ci:` needs a reason"
    with capsys.disabled():
        print("\ndocumented commands not run in CI:\n" + "\n".join(f"  {c}  ({c.not_in_ci})" for c in skipped))


def test_every_command_has_a_budget_and_no_placeholder():
    for cmds in ALL.values():
        for c in cmds:
            if c.not_in_ci is None and c.words not in CI_LINES:
                argv_of(c)  # raises for a command the test does not know how to shrink
                assert not any(re.search(r"<\w+>|\.\.\.|^\|$", w) for w in c.words), \
                    f"{c}: a placeholder (<date>, ...) does not run as printed; name the dir (hydra.run.dir=...)"


def test_readme_leads_with_set_up_main_and_test_commands_that_ci_runs():
    first = [c.words for c in ALL["README.md"][:3]]
    assert first == [("pip", "install", "-e", ".[dev]"), ("vae-train",), ("pytest",)], first
    assert first[0] in CI_LINES and first[2] in CI_LINES, ".ci/run no longer installs and tests as the README says"
    assert len((REPO / "README.md").read_text().splitlines()) <= 160


def test_configs_page_lists_what_configs_holds():
    assert page_part((REPO / "docs" / "configs.md").read_text()) == generate(), \
        "docs/configs.md is stale: python -m vae_cli.config_docs --write docs/configs.md"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'."""
    heads = re.findall(r"^#+\s+(.*)$", re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_links_between_pages_resolve():
    broken = []
    for page in [*PAGES, REPO / "CHANGELOG.md"]:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_no_history_outside_the_changelog():
    pattern = re.compile(r"issue [0-9]|this round|previous round|was lent|session", re.I)
    hits = []
    for root in ("README.md", "docs", "vae_cli", "configs", "benchmarks"):
        for path in [REPO / root] if (REPO / root).is_file() else sorted((REPO / root).rglob("*")):
            if path.is_file() and path.suffix in (".md", ".py", ".yaml"):
                hits += [f"{path.relative_to(REPO)}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1)
                         if pattern.search(line)]
    assert not hits, hits
