"""hat's built-in hardware backends, installed as the package ``hat_plugins``.

Each module is an ordinary plugin, registered through the entry-point group ``hat`` in pyproject.toml
exactly as a third-party package would (see examples/hat-hw-example/).
"""
