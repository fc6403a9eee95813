"""The `cairn` command (also `kubectl cairn`)."""

from __future__ import annotations

import typer

from cairn import logs
from cairn.config import Settings

app = typer.Typer(
    name="cairn",
    help="Durable tasks on Kubernetes: trigger runs, follow them, see their steps.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def operator() -> None:
    """Run the operator (reconciles Tasks, TaskRuns and Queues). Configured by CAIRN_* variables."""
    from cairn.handlers.run import run_operator

    config = Settings.from_env()
    logs.configure(config.log_format, config.log_level)
    from prometheus_client import start_http_server

    if config.metrics_port:
        start_http_server(config.metrics_port)
    run_operator(config)


@app.command()
def api() -> None:
    """Run the checkpoint and trigger HTTP API. Configured by CAIRN_* variables."""
    from cairn.server.app import serve

    config = Settings.from_env()
    logs.configure(config.log_format, config.log_level)
    serve(config)


def main() -> None:
    app()
