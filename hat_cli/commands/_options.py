"""Options several commands share, declared once."""

from __future__ import annotations

import typer

JSON = typer.Option(False, "--json", help="Print one JSON document on stdout (human output stays on stderr).")
SEED = typer.Option(1, "--seed", help="Random seed; recorded next to what the command writes.")
TASK = typer.Option(..., "--task", "-t", help="Task: iwslt14.de-en, wmt14.en-de, wmt14.en-fr, wmt19.en-de, multi30k.de-en or demo.")
DATA_DIR = typer.Option(None, "--data-dir", help="Prepared data (default: data/<task>, as written by `hat data`).")
DEVICE = typer.Option(None, "--device", help="torch device to run on (default: cuda if available, else cpu).")
