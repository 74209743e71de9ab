"""The `hat` command line: argument parsing only; each command calls a library function.

Command modules are imported here at start-up, so they must not import torch at module level
(`hat --help` has to return in well under half a second).
"""

from __future__ import annotations

import typer

from hat_cli.commands import data, demo, hw, latency, profile, search, test, train, zoo

app = typer.Typer(
    name="hat",
    help="Hardware-Aware Transformers: train a SuperTransformer, learn your device's latency, "
    "search the best SubTransformer under a latency budget, train and test it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("data")(data.data)
app.command("train-super")(train.train_super)
app.command("collect-latency")(latency.collect_latency)
app.command("fit-predictor")(latency.fit_predictor)
app.command("search")(search.search)
app.command("train-sub")(train.train_sub)
app.command("test")(test.test)
app.command("profile")(profile.profile)
app.add_typer(zoo.app, name="zoo", help="The published models: list, info, pull, convert, push.")
app.add_typer(hw.app, name="hw", help="Hardware backends (plugins).")
app.command("demo")(demo.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
