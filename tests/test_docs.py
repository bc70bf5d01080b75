"""The README and docs/ hold together: every relative link and image resolves to a file in the repo, and every
command the README's command-line section shows parses."""
import re
import shlex
from pathlib import Path

import pytest

from gridar_desktop.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _relative_links(md: Path) -> list[str]:
    return [t for t in LINK.findall(md.read_text()) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(md):
    missing = [t for t in _relative_links(md) if not (md.parent / t.split("#")[0]).exists()]
    assert not missing, f"{md.name} links to missing files: {missing}"


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text()) <= 12_000


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## The command line", 1)[1].split("\n## ", 1)[0]
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("gridar "):
                cmds.append(shlex.split(line)[1:])
    return cmds


def test_the_readme_shows_every_command():
    shown = {c[0] for c in _readme_commands()}
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert shown == set(sub.choices), f"README shows {sorted(shown)}, the CLI has {sorted(sub.choices)}"


@pytest.mark.parametrize("argv", _readme_commands(), ids=lambda a: a[0])
def test_each_readme_command_parses(argv):
    args = build_parser().parse_args(argv)
    assert args.func is not None
