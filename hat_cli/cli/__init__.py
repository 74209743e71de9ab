"""Layer 6: the `hat` command line. `entry` (the executable; answers help from stored pages), `app` (the
Typer app), `commands/` (one thin module per command group), `console` (output conventions),
`help_snapshot` and `_help_pages` (the stored help). Commands parse options, turn words into objects
through `hat_cli.resolve`, call the library and print.
"""
