"""The `hat` executable's entry point.

`hat`, `hat --help` and `hat CMD [SUB] --help` (and a bare `hat zoo`) are answered from the pages
`help_snapshot.py` pre-renders from the Typer app, without importing Typer, Rich or torch, so help appears
about as fast as Python starts; everything else goes to the Typer app in `app.py`. A test keeps the stored
pages in step with the Typer app.
"""

from __future__ import annotations

import sys

HELP_OPTIONS = ("--help", "-h")


def stored_help(args: list[str]) -> tuple[str, bool] | None:
    """(page, whether it is an error on stderr) when Typer would print a stored page for ``args``, else None.

    Only the exact forms `CMD [SUB] --help|-h` and a bare group are answered; anything else (an argument
    before --help, a narrow terminal that click would wrap differently) goes to Typer.
    """
    # Lazily, like every import of this module: it runs on each `hat` start, before anything else is needed.
    from hat_cli.cli._help_pages import BARE_GROUPS, MIN_COLUMNS, PAGES

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
    args = sys.argv[1:] or ["--help"]  # `hat` alone shows the overview (exit 0), as it always did
    stored = stored_help(args)
    if stored is not None:
        page, bare = stored
        # A bare group is a usage error in click: the page goes to stderr and the exit code is 2.
        (sys.stderr if bare else sys.stdout).write(page)
        if bare:
            sys.exit(2)
        return
    from hat_cli.cli.app import main as typer_main  # lazily: Typer and the commands, only when no page answers

    typer_main()


if __name__ == "__main__":
    main()
