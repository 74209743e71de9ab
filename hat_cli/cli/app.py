"""The `hat` command line: argument parsing only; each command calls a library function.

Command modules are imported here at start-up, so they must not import torch at module level
(`hat --help` has to return in well under half a second). Help is click's plain text, not Rich panels:
it needs no Rich rendering and is what `help_snapshot.py` snapshots, so that `entry.py` can answer
`hat --help` and `hat CMD --help` without importing Typer at all.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from hat_cli.cli.commands import data, demo, export, hw, latency, profile, search, server, test, train, zoo


class CommandGroup(TyperGroup):
    """Lists each subcommand's first sentence in full, wrapped; click would cut it to fit one line."""

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    name="hat",
    cls=CommandGroup,
    rich_markup_mode=None,
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
app.command("export")(export.export)
app.command("latency-server")(server.latency_server)
app.add_typer(zoo.app, name="zoo", cls=CommandGroup, help="The published models: list, info, pull, convert, push.")
app.add_typer(hw.app, name="hw", cls=CommandGroup, help="Hardware backends (plugins).")
app.command("demo")(demo.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
