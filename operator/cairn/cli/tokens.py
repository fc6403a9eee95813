"""Wait tokens: `tokens list`, `tokens complete ID`, and `approve RUN` (the run's one waiting token).

Completing goes through a TokenCompletion object, so that Kubernetes RBAC says who may (create
tokencompletions in the namespace) and the audit log says who did."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from cairn.api.common import GROUP
from cairn.cli.errors import EXIT_CODES_HELP, CliError, ExitCode
from cairn.cli.kube import Kube
from cairn.cli.options import Context, Kubeconfig, Namespace, OutputFormat, console, session, show
from cairn.cli.render import NONE, Output, dump, table

EPILOG = "\b\n" + EXIT_CODES_HELP
app = typer.Typer(help="Wait tokens: list them, complete one.", no_args_is_help=True, rich_markup_mode=None)
HANDLED_WITHIN = 30.0  # seconds to wait for the operator to handle a TokenCompletion
POLL_SECONDS = 0.3

Data = Annotated[
    str | None,
    typer.Option("--data", "-d", help="What the waiting run receives, as JSON, e.g. '{\"approved\": true}'."),
]


def _tokens(kube: Kube, run: str | None) -> list[tuple[str, dict[str, Any]]]:
    """(run name, token entry) of every run's tokens, or of one run's."""
    bodies = [kube.get_run(run)] if run else kube.list_runs()
    return [(b["metadata"]["name"], t) for b in bodies for t in (b.get("status") or {}).get("tokens") or []]


@app.command("list", epilog=EPILOG)
def list_tokens(
    run: Annotated[str | None, typer.Option("--run", help="Only this run's tokens.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only tokens with this tag.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only tokens in this status: waiting, completed, timedOut.")
    ] = None,
    output: OutputFormat = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """The wait tokens of the namespace's runs: id, run, step, status, tags, timeout."""
    if status is not None and status not in ("waiting", "completed", "timedOut"):
        raise CliError(ExitCode.INVALID, f"--status {status!r} is not one of waiting, completed, timedOut")
    with session(namespace, context, kubeconfig) as kube:
        found = [
            (r, t)
            for r, t in _tokens(kube, run)
            if (tag is None or tag in (t.get("tags") or [])) and (status is None or t.get("status") == status)
        ]
        where = f"in namespace {kube.namespace!r}"
    if output in (Output.JSON, Output.YAML):
        console().print(dump({"tokens": [{"run": r, **t} for r, t in found]}, output))
        return
    if not found:
        console(stderr=True).print(f"No tokens found {where}.")
        return
    rows = [
        [
            t["id"],
            r,
            t.get("step", ""),
            t.get("status", ""),
            ",".join(t.get("tags") or []) or NONE,
            t.get("timeoutTime") or NONE,
        ]
        for r, t in found
    ]
    show(console(), table(["ID", "RUN", "STEP", "STATUS", "TAGS", "TIMEOUT"], rows))


def _data(value: str | None, default: Any) -> str:
    if value is None:
        return json.dumps(default)
    try:
        json.loads(value)
    except json.JSONDecodeError as e:
        raise CliError(
            ExitCode.INVALID,
            f"--data is not JSON: {e.msg} at character {e.pos}",
            hint="quote it for the shell, e.g. --data '{\"approved\": true}'",
        ) from e
    return value


def complete_token(kube: Kube, token: str, data: str) -> None:
    """Create the TokenCompletion and wait for the operator to say how it went."""
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "TokenCompletion",
        "metadata": {"generateName": f"{token}-", "namespace": kube.namespace},
        "spec": {"token": token, "data": data},
    }
    created = kube.create_token_completion(body)
    name = created["metadata"]["name"]
    deadline = time.monotonic() + HANDLED_WITHIN
    while time.monotonic() < deadline:
        status = kube.get_token_completion(name).get("status") or {}
        outcome = status.get("outcome")
        if outcome == "Completed":
            console().print(f"token {token} completed ({GROUP} TokenCompletion {name}): {status.get('message')}")
            return
        if outcome:
            raise CliError(ExitCode.REFUSED, f"token {token}: {outcome}: {status.get('message')}")
        time.sleep(POLL_SECONDS)
    raise CliError(
        ExitCode.TIMEOUT,
        f"TokenCompletion {name} was created but not handled within {HANDLED_WITHIN:.0f}s",
        hint="is the Cairn operator running? kubectl get tokencompletions shows its outcome later",
    )


@app.command("complete", epilog=EPILOG)
def complete(
    token: Annotated[str, typer.Argument(metavar="TOKEN", help="The token's id (tok-...).", show_default=False)],
    data: Data = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Complete a wait token with --data (default null): the run waiting for it resumes. The first
    completion wins; a later one is refused and says when the first was made."""
    if not token.startswith("tok-"):
        raise CliError(ExitCode.INVALID, f"{token!r} is not a token id (they look like tok-0123456789abcdef)")
    payload = _data(data, None)
    with session(namespace, context, kubeconfig) as kube:
        complete_token(kube, token, payload)


def approve(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The run waiting for an approval.", show_default=False)],
    data: Data = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Complete the one token RUN waits for, with --data (default {"approved": true})."""
    payload = _data(data, {"approved": True})
    with session(namespace, context, kubeconfig) as kube:
        waiting = [t for _, t in _tokens(kube, run) if t.get("status") == "waiting"]
        if not waiting:
            raise CliError(ExitCode.NOT_FOUND, f"run {run!r} has no token waiting to be completed")
        if len(waiting) > 1:
            ids = ", ".join(f"{t['id']} ({t.get('step')})" for t in waiting)
            raise CliError(
                ExitCode.INVALID,
                f"run {run!r} has {len(waiting)} waiting tokens: {ids}",
                hint="complete one by id: cairn tokens complete ID",
            )
        complete_token(kube, waiting[0]["id"], payload)
