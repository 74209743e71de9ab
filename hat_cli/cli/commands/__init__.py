"""One module per subcommand group; each parses options and calls resolve and the library. They import
both inside the command functions: `hat CMD` must not import torch before it needs it."""
