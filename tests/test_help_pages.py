"""`--help` pages: every option's description is a whole sentence, and every group names its docs page."""
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from vae_cli.cli_help import GROUP_DOCS, SENTENCE_END, first_comment, header_lines
from vae_cli.overrides import GROUP_ROOTS, tool_groups

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def option_files(config_name: str):
    root = files(GROUP_ROOTS[config_name])
    for group, options in tool_groups(config_name).items():
        for option in options:
            yield group, option, (root / group / f"{option}.yaml").read_text()


@pytest.fixture(scope="module")
def train_help() -> str:
    return subprocess.run([BIN / "vae-train", "--help"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("config_name", ["train", "sample"])
def test_each_option_summary_is_a_whole_sentence(config_name):
    for group, option, text in option_files(config_name):
        summary, header = first_comment(text), header_lines(text)
        assert summary, f"{group}/{option}.yaml has no header comment for --help"
        assert summary.endswith(SENTENCE_END) or summary == " ".join(header), \
            f"{group}/{option}: --help would cut its description off: {summary!r}"


def test_help_shows_whole_sentences_where_it_once_cut_them(train_help):
    lines = {line.split()[0]: line for line in train_help.splitlines() if line.startswith("      ")}
    for option in ("cvae", "iwae_paper_1layer", "adam*", "gumbel", "vqvae", "iaf"):
        assert lines[option].rstrip().endswith("."), lines[option]
    assert not lines["cvae"].rstrip().endswith("appended to the")
    assert not lines["iwae_paper_1layer"].rstrip().endswith("784-200-200-50,")


def test_every_group_names_an_existing_docs_page(train_help):
    for group in tool_groups("train"):
        line = next(l for l in train_help.splitlines() if l.startswith(f"  {group} "))
        assert f"({GROUP_DOCS[group]})" in line, line
        assert (REPO / GROUP_DOCS[group]).is_file(), GROUP_DOCS[group]
    assert (REPO / GROUP_DOCS["mode"]).is_file()
    assert "docs/configs.md" in train_help.splitlines()[-1]
