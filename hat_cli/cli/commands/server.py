"""`hat latency-server`: measure architectures for `--hw remote` on the machine this runs on."""

from __future__ import annotations

import typer

from hat_cli.cli.console import console, handle_errors


@handle_errors
def latency_server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; the token guards it)."),
    port: int = typer.Option(7860, "--port", help="Port to listen on (0: any free port, printed at start)."),
) -> None:
    """Serve latency measurements to `--hw remote` clients, with this machine's backends (token: $HAT_LATENCY_TOKEN)."""
    # Lazily: the library loads when the command runs, not at start-up.
    from hat_cli.latency.backends import load_hardware
    from hat_cli.latency.server import LatencyService, make_server, require_token

    token = require_token()
    registry = load_hardware()
    service = LatencyService(registry.backends, token, log=lambda message: console.print(message, highlight=False))
    server = make_server(host, port, service)
    bound_host, bound_port = server.server_address[:2]
    names = ", ".join(n for n, b in sorted(service.info()["backends"].items()) if b["available"])
    # Tests and scripts wait for this exact line to learn the port.
    console.print(f"hat latency-server listening on http://{bound_host}:{bound_port} (backends: {names})", highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped", highlight=False)
    finally:
        server.server_close()
        service.close()
