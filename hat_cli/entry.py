"""The `hat` executable's entry point.

`hat` and `hat --help` are answered from the table below, and `hat CMD [SUB] --help` (and a bare
`hat zoo`) from the pages `help_snapshot.py` pre-renders from the Typer app, without importing Typer,
Rich or torch, so help appears about as fast as Python starts; everything else goes to the Typer app in
`cli.py`. Tests keep this table and the stored pages in step with the Typer app.
"""

from __future__ import annotations

import sys

COMMANDS: tuple[tuple[str, str], ...] = (
    ("data", "Download and preprocess a task (tokenize, BPE, dictionaries, binarize)."),
    ("train-super", "Train a SuperTransformer (one random SubTransformer per update); resumable."),
    ("collect-latency", "Measure sampled SubTransformers on this machine with a hardware backend; append to a CSV."),
    ("fit-predictor", "Train a latency predictor on a latency CSV and report its held-out error."),
    ("search", "Evolutionary search for the best SubTransformer under a latency budget."),
    ("train-sub", "Train a SubTransformer (YAML file or zoo name) from scratch."),
    ("test", "Translate a test set with beam search and score it (BLEU, SacreBLEU)."),
    ("profile", "Parameters, FLOPs and (with --hw) latency of an architecture."),
    ("zoo", "The published models: list, info, pull, convert, push."),
    ("hw", "Hardware backends (plugins): list."),
    ("demo", "The whole pipeline on the offline demo task, in a few CPU minutes."),
)

_HELP = """Usage: hat [OPTIONS] COMMAND [ARGS]...

  Hardware-Aware Transformers: train a SuperTransformer, learn your device's
  latency, search the best SubTransformer under a latency budget, train and
  test it.

Options:
  -h, --help  Show this message and exit.

Commands:
{commands}

Run `hat COMMAND --help` for a command's options.
"""


def overview() -> str:
    width = max(len(name) for name, _ in COMMANDS)
    lines = "\n".join(f"  {name.ljust(width)}  {text}" for name, text in COMMANDS)
    return _HELP.format(commands=lines)


HELP_OPTIONS = ("--help", "-h")


def stored_help(args: list[str]) -> tuple[str, bool] | None:
    """(page, whether it is an error on stderr) when Typer would print a stored page for ``args``, else None.

    Only the exact forms `CMD [SUB] --help|-h` and a bare group are answered; anything else (an argument
    before --help, a narrow terminal that click would wrap differently) goes to Typer.
    """
    if not args:
        return None
    from hat_cli._help_pages import BARE_GROUPS, MIN_COLUMNS, PAGES

    if args[-1] in HELP_OPTIONS:
        path, bare = tuple(args[:-1]), False
    elif tuple(args) in BARE_GROUPS:
        path, bare = tuple(args), True
    else:
        return None
    page = PAGES.get(path)
    if page is None:
        return None
    import shutil  # already imported by site; click measures the terminal the same way

    if shutil.get_terminal_size().columns < MIN_COLUMNS:
        return None
    return page, bare


def main() -> None:
    args = sys.argv[1:]
    if args in ([], ["--help"], ["-h"]):
        sys.stdout.write(overview())
        return
    stored = stored_help(args)
    if stored is not None:
        page, bare = stored
        # A bare group is a usage error in click: the page goes to stderr and the exit code is 2.
        (sys.stderr if bare else sys.stdout).write(page)
        if bare:
            sys.exit(2)
        return
    from hat_cli.cli import main as typer_main

    typer_main()


if __name__ == "__main__":
    main()
