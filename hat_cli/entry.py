"""The `hat` executable's entry point.

`hat` and `hat --help` are answered from the table below without importing Typer, Rich or torch, so the
overview appears about as fast as Python starts; everything else goes to the Typer app in `cli.py`.
A test keeps this table and the Typer app in step.
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


def main() -> None:
    args = sys.argv[1:]
    if args in ([], ["--help"], ["-h"]):
        sys.stdout.write(overview())
        return
    from hat_cli.cli import main as typer_main

    typer_main()


if __name__ == "__main__":
    main()
