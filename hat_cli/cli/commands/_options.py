"""Options several commands share, declared once."""

from __future__ import annotations

import typer

JSON = typer.Option(False, "--json", help="Print one JSON document on stdout (human output stays on stderr).")
SEED = typer.Option(1, "--seed", help="Random seed; recorded next to what the command writes.")
# The help names no task list, so that adding a task leaves the stored help pages as they are.
TASK = typer.Option(..., "--task", "-t", help="Task, e.g. wmt14.en-de or iwslt14.de-en (an unknown name lists them all).")
DATA_DIR = typer.Option(None, "--data-dir", help="Prepared data (default: data/<task>, as written by `hat data`).")
DEVICE = typer.Option(None, "--device", help="torch device to run on (default: cuda if available, else cpu).")

# Every measuring command (collect-latency, profile --hw, search --verify) takes these the same way.
REMOTE = typer.Option(None, "--remote", envvar="HAT_REMOTE", help="With --hw remote: URL of a device running `hat latency-server` (also $HAT_REMOTE).")
REMOTE_BACKEND = typer.Option(None, "--backend", help="With --hw remote: the backend the device measures with (see its `hat hw list`; default cpu).")
THREADS = typer.Option(None, "--threads", help="CPU threads the meter may use (default: the backend's setting).")
