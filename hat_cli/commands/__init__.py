"""One module per subcommand group; each parses options and calls the library (no torch at import)."""
