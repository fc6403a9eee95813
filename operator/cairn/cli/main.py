"""The `cairn` command (also `kubectl cairn`)."""

from __future__ import annotations

import socket
import sys
import traceback
from collections.abc import Sequence

import typer
from pydantic import ValidationError

from cairn import logs
from cairn.cli import control, history, podlogs, runs, schedules, tokens, trigger, ui
from cairn.cli.errors import EXIT_CODES_HELP, CliError, ExitCode
from cairn.cli.options import console
from cairn.config import Settings, env_name

EPILOG = "\b\n" + EXIT_CODES_HELP  # \b: click keeps the lines as written

app = typer.Typer(
    name="cairn",
    help=(
        "Durable tasks on Kubernetes: trigger runs, follow them, see their steps.\n\n"
        "Every command takes kubectl's -n/--namespace, --context and --kubeconfig. "
        "Also usable as a kubectl plugin: kubectl cairn ..."
    ),
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

app.command("trigger", epilog=EPILOG)(trigger.trigger)
app.command("runs", epilog=EPILOG)(runs.runs)
app.command("get", epilog=EPILOG)(runs.get)
app.command("describe", epilog=EPILOG)(runs.describe)
app.command("steps", epilog=EPILOG)(history.steps)
app.command("logs", epilog=EPILOG)(podlogs.logs)
app.command("cancel", epilog=EPILOG)(control.cancel)
app.command("rerun", epilog=EPILOG)(trigger.rerun)
app.command("wait", epilog=EPILOG)(trigger.wait)
app.command("queues", epilog=EPILOG)(control.queues)
app.command("schedules", epilog=EPILOG)(schedules.schedules)
app.add_typer(schedules.app, name="schedule", epilog=EPILOG)
app.add_typer(tokens.app, name="tokens", epilog=EPILOG)
app.command("approve", epilog=EPILOG)(tokens.approve)
app.command("ui", epilog=EPILOG)(ui.ui)


def _settings() -> Settings:
    """The CAIRN_* settings; a bad value is the user's to fix, named by its variable."""
    try:
        return Settings.from_env()
    except ValidationError as e:
        bad = "; ".join(f"{env_name(str(err['loc'][0]))}: {err['msg']}" for err in e.errors())
        raise CliError(ExitCode.INVALID, f"bad setting: {bad}", hint="every setting: docs/configuration.md") from e


def _claim_ports(config: Settings, *fields: str) -> None:
    """A port another process holds is a configuration error, not a crash: name it and its setting."""
    for name in fields:
        port = getattr(config, name)
        if not port:
            continue
        host = config.api_host if name == "api_port" else "0.0.0.0"  # noqa: S104 - what the server binds
        try:
            family, kind, _proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        except OSError as e:
            raise CliError(ExitCode.INVALID, f"{env_name('api_host')}={host!r} is not an address: {e}") from e
        with socket.socket(family, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as e:
                off = "" if name == "api_port" else ", or 0 to turn it off"
                raise CliError(
                    ExitCode.INVALID,
                    f"port {port} ({env_name(name)}) is not free on {host}: {e.strerror} "
                    "(is another Cairn operator or API running on this machine?)",
                    hint=f"set {env_name(name)} to a free port{off}",
                ) from e


@app.command()
def operator() -> None:
    """Run the operator (reconciles Tasks, TaskRuns and Queues). Configured by CAIRN_* variables."""
    from cairn.handlers.run import run_operator

    config = _settings()
    _claim_ports(config, "metrics_port", "liveness_port")
    logs.configure(config.log_format, config.log_level)
    from prometheus_client import start_http_server

    if config.metrics_port:
        start_http_server(config.metrics_port)
    run_operator(config)


@app.command()
def api() -> None:
    """Run the checkpoint and trigger HTTP API. Configured by CAIRN_* variables."""
    from cairn.server.app import serve

    config = _settings()
    _claim_ports(config, "metrics_port", "api_port")
    logs.configure(config.log_format, config.log_level)
    serve(config)


def _is_usage_error(e: Exception) -> bool:
    """A bad option or argument, as click (or the click that typer carries) reports it."""
    return isinstance(getattr(e, "exit_code", None), int) and callable(getattr(e, "show", None))


def run(args: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see EXIT_CODES_HELP)."""
    command = typer.main.get_command(app)
    err = console(stderr=True)
    try:
        result = command.main(args=list(args) if args is not None else None, prog_name="cairn", standalone_mode=False)
    except CliError as e:
        err.print(f"error: {e.message}", style="red")
        if e.hint:
            err.print(f"hint: {e.hint}")
        return int(e.code)
    except (typer.Abort, KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    except Exception as e:  # noqa: BLE001 - usage errors, then the last resort: a bug, reported as one
        if _is_usage_error(e):
            e.show(file=sys.stderr)  # type: ignore[attr-defined]
            return int(ExitCode.OK if type(e).__name__ == "NoArgsIsHelpError" else ExitCode.INVALID)
        traceback.print_exc()
        err.print("error: unexpected failure (a bug in cairn: please report it with the trace above)", style="red")
        return int(ExitCode.INTERNAL)
    return result if isinstance(result, int) else int(ExitCode.OK)


def main() -> None:
    sys.exit(run())
