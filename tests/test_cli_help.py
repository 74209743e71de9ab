"""`hat CMD --help` from stored pages: they must be exactly what Typer prints, and current.

Speed is measured in bench/bench_startup.py, not here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hat_cli.cli import help_snapshot
from hat_cli.cli._help_pages import PAGES
from hat_cli.cli.entry import stored_help

# The `hat` executable, and the Typer app itself, as the `hat` executable would run it without entry.py's shortcut.
HAT = "import sys; sys.argv[0] = 'hat'; from hat_cli.cli.entry import main; main()"
TYPER = "from typer.main import get_command; from hat_cli.cli.app import app; get_command(app).main(prog_name='hat')"


def run(argv: list[str], columns: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS=str(columns))
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_stored_pages_are_current():
    stored = help_snapshot.PAGES_FILE.read_text(encoding="utf-8")
    assert stored == help_snapshot.source(), "hat_cli/cli/_help_pages.py is stale: run `python -m hat_cli.cli.help_snapshot`"


def test_every_command_of_the_overview_has_a_page():
    overview = [line.split()[0] for line in PAGES[()].split("Commands:\n", 1)[1].splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert {(name,) for name in overview} <= set(PAGES)
    assert {("zoo", "list"), ("zoo", "pull"), ("hw", "list")} <= set(PAGES)


@pytest.mark.parametrize(
    "args", [["profile", "--help"], ["search", "-h"], ["zoo", "list", "--help"], ["hw", "--help"], ["zoo"]]
)
def test_stored_help_is_exactly_what_typer_prints(args):
    fast = run([sys.executable, "-c", HAT, *args], columns=100)
    typer = run([sys.executable, "-c", TYPER, *args], columns=100)
    assert (fast.stdout, fast.stderr, fast.returncode) == (typer.stdout, typer.stderr, typer.returncode)
    assert fast.stdout + fast.stderr == PAGES[tuple(a for a in args if a not in ("--help", "-h"))]


def test_stored_help_imports_neither_typer_nor_rich_nor_torch():
    code = (
        "import sys; sys.argv=['hat', 'zoo', 'list', '--help']\n"
        "from hat_cli.cli.entry import main\n"
        "main()\n"
        "print(sorted(m for m in ('torch', 'typer', 'rich', 'pydantic') if m in sys.modules), file=sys.stderr)"
    )
    result = run([sys.executable, "-c", code], columns=100)
    assert result.stderr.strip() == "[]" and result.stdout == PAGES[("zoo", "list")]


def test_a_narrow_terminal_gets_typer_wrapping_it():
    fast = run([sys.executable, "-c", HAT, "profile", "--help"], columns=60)
    typer = run([sys.executable, "-c", TYPER, "profile", "--help"], columns=60)
    assert fast.returncode == 0 and fast.stdout == typer.stdout != PAGES[("profile",)]


def test_only_exact_help_forms_are_answered(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert stored_help(["profile", "--help"]) == (PAGES[("profile",)], False)
    assert stored_help(["zoo", "pull", "-h"]) == (PAGES[("zoo", "pull")], False)
    assert stored_help(["hw"]) == (PAGES[("hw",)], True)
    for args in (
        ["profile", "arch.yml", "--help"],  # an argument before --help: Typer decides
        ["zoo list", "--help"],
        ["demo"],  # a bare command runs it
        ["zoo", "list"],
        ["nope", "--help"],
        ["--help", "profile"],
    ):
        assert stored_help(args) is None, args
    monkeypatch.setenv("COLUMNS", "79")
    assert stored_help(["profile", "--help"]) is None


def test_check_mode_finds_a_stale_file_and_regeneration_fixes_it(tmp_path, monkeypatch):
    real = help_snapshot.PAGES_FILE
    pages = tmp_path / "_help_pages.py"
    pages.write_text("PAGES = {}\n")
    monkeypatch.setattr(help_snapshot, "PAGES_FILE", pages)
    assert help_snapshot.main(["--check"]) == 1
    assert help_snapshot.main([]) == 0
    assert help_snapshot.main(["--check"]) == 0
    assert pages.read_text(encoding="utf-8") == real.read_text(encoding="utf-8")
