"""Run history, read through Cairn's history API (which asks Kubernetes whether you may `get taskruns`
in the namespace): `cairn runs --archived` and `cairn steps RUN [KEY]`. The server is `--server` or
$CAIRN_SERVER (e.g. after `kubectl -n cairn-system port-forward svc/cairn-api 8080:8080`,
http://localhost:8080); the identity is `--token`, $CAIRN_TOKEN, or the kubeconfig user's token."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from cairn.cli.credentials import Bearer, from_kubeconfig_user
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.kubeconfig import load_kubeconfig, select_context
from cairn.cli.options import Context, Kubeconfig, Namespace, OutputFormat, console, show
from cairn.cli.render import Output, dump, table
from cairn.domain.timefmt import parse_time

Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        help="Cairn's API (default: $CAIRN_SERVER), e.g. http://localhost:8080 after "
        "kubectl -n cairn-system port-forward svc/cairn-api 8080:8080.",
        show_default=False,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="A Kubernetes bearer token (default: $CAIRN_TOKEN, else the kubeconfig user's token).",
        show_default=False,
    ),
]


class HistoryClient:
    def __init__(self, server: str, token: str, namespace: str) -> None:
        self.server = server.rstrip("/")
        self.namespace = namespace
        self.http = httpx.Client(
            base_url=self.server, headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False
        )

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"/v1/namespaces/{quote(self.namespace, safe='')}/history/{path}"
        try:
            response = self.http.get(url, params=params)
        except httpx.TransportError as e:
            raise CliError(ExitCode.UNREACHABLE, f"cannot reach Cairn's API at {self.server}: {e}") from e
        try:
            doc = response.json()
        except ValueError:
            doc = {"message": response.text[:300]}
        if response.status_code == 404:
            raise CliError(ExitCode.NOT_FOUND, doc.get("message", "not found"))
        if response.status_code in (401, 403):
            raise CliError(ExitCode.REFUSED, doc.get("message", "refused"))
        if response.status_code >= 400:
            raise CliError(ExitCode.INVALID, f"Cairn's API answered {response.status_code}: {doc.get('message')}")
        return doc

    def close(self) -> None:
        self.http.close()


def connect_history(
    server: str | None, token: str | None, namespace: str | None, context: str | None, kubeconfig: str | None
) -> HistoryClient:
    server, bearer, namespace = api_identity(server, token, namespace, context, kubeconfig, "run history")
    return HistoryClient(server, bearer.current(), namespace)


def api_identity(
    server: str | None,
    token: str | None,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    what: str,
) -> tuple[str, Bearer, str]:
    """Cairn's API (--server or $CAIRN_SERVER), your bearer token (--token, $CAIRN_TOKEN or the
    kubeconfig user's: its token, token file or credential plugin) and the namespace (-n or the
    context's), for a command that talks to the API."""
    server = server or os.environ.get("CAIRN_SERVER")
    if not server:
        raise CliError(
            ExitCode.UNREACHABLE,
            f"{what} is reached through Cairn's API: give --server URL or set CAIRN_SERVER",
            hint="kubectl -n cairn-system port-forward svc/cairn-api 8080:8080, then --server http://localhost:8080",
        )
    config, source = load_kubeconfig(kubeconfig)
    single = select_context(config, context, source)
    given = token or os.environ.get("CAIRN_TOKEN")
    bearer = Bearer(given) if given else from_kubeconfig_user(single.context.user or "", single.user)
    if bearer is None:
        raise CliError(
            ExitCode.INVALID,
            f"{what} needs a bearer token, and the context {single.context_name!r} has none "
            "(its user signs in with a certificate)",
            hint="pass --token (e.g. from kubectl create token SERVICEACCOUNT) or set CAIRN_TOKEN",
        )
    return server.rstrip("/"), bearer, namespace or single.namespace or "default"


def _when(value: str | None) -> str:
    return parse_time(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _took(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "-"
    seconds = (parse_time(end) - parse_time(start)).total_seconds()
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def archived_runs(
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
    server: str | None,
    token: str | None,
    *,
    task: str | None,
    phase: str | None,
    since: str | None,
    until: str | None,
    label: str | None,
    everything: bool,
    output: Output | None,
) -> None:
    params = {"archived": "false" if everything else "true", "limit": "500"}
    for key, value in (("task", task), ("phase", phase), ("since", since), ("until", until), ("label", label)):
        if value is not None:
            params[key] = value
    client = connect_history(server, token, namespace, context, kubeconfig)
    try:
        rows: list[dict[str, Any]] = []
        while True:
            page = client.get("runs", params)
            rows += page["runs"]
            if not page.get("next"):
                break
            params["after"] = page["next"]
    finally:
        client.close()
    out = console()
    if output in (Output.JSON, Output.YAML):
        out.print(dump({"runs": rows}, output))
        return
    if output is Output.NAME:
        for r in rows:
            out.print(r["name"])
        return
    if not rows:
        what = "runs" if everything else "archived runs (TaskRuns deleted, records kept)"
        console(stderr=True).print(f"No {what} found in namespace {client.namespace!r}.")
        return
    show(
        out,
        table(
            ["NAME", "TASK", "PHASE", "ATTEMPTS", "STEPS", "CREATED", "DELETED"],
            [
                [
                    r["name"],
                    r["task"],
                    r["phase"],
                    str(r["attempt"]),
                    str(r["stepsCompleted"]),
                    _when(r["createdAt"]),
                    _when(r.get("deletedAt")),
                ]
                for r in rows
            ],
        ),
    )


def steps(
    run: Annotated[
        str, typer.Argument(metavar="RUN", help="The run (its TaskRun may be deleted).", show_default=False)
    ],
    key: Annotated[
        str | None,
        typer.Argument(
            metavar="[KEY]", help="One step's key (e.g. transcode#0): print its whole result.", show_default=False
        ),
    ] = None,
    output: OutputFormat = None,
    server: Server = None,
    token: Token = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Every step a run recorded, from PostgreSQL (also after its TaskRun was deleted): the attempt that
    ran it (0: copied by a fork), when it started, how long it took, the size of its result; then the
    saved state. With KEY, that step's result (the inputs and state at a failure are these)."""
    client = connect_history(server, token, namespace, context, kubeconfig)
    try:
        if key is not None:
            doc = client.get(f"runs/{quote(run, safe='')}/steps/{quote(key, safe='')}")
            if output in (Output.JSON, Output.YAML):
                console().print(dump(doc, output))
            else:
                console().print(json.dumps(doc["result"], indent=2, ensure_ascii=False))
            return
        doc = client.get(f"runs/{quote(run, safe='')}")
    finally:
        client.close()
    out = console()
    if output in (Output.JSON, Output.YAML):
        out.print(dump(doc, output))
        return
    rows = [
        [
            s["key"],
            "copied" if s["attempt"] == 0 else str(s["attempt"]),
            _when(s.get("startedAt")),
            _took(s.get("startedAt"), s.get("completedAt")),
            f"{s['bytes']} B",
            str(s["tries"]) if s.get("tries") else "-",
        ]
        for s in doc["steps"]
    ]
    gone = f", TaskRun deleted {_when(doc['deletedAt'])}" if doc.get("deletedAt") else ""
    out.print(f"Run {doc['name']} ({doc['task']}, {doc['phase']}{gone}): {len(rows)} steps recorded")
    if rows:
        show(out, table(["KEY", "ATTEMPT", "STARTED", "TOOK", "RESULT", "TRIES"], rows))
    state = doc.get("state")
    if state:
        note = f" ({state['note']})" if state.get("note") else ""
        out.print(f"Saved state{note}: {json.dumps(state.get('state'), ensure_ascii=False)[:300]}")
    out.print(f"One step's result: cairn steps {doc['name']} KEY")


def describe_archived(client: HistoryClient, run: str) -> str:
    """`cairn describe` of a run from history: its record, its attempts and the steps each ran."""
    doc = client.get(f"runs/{quote(run, safe='')}")
    lines = [
        f"Name:          {doc['name']}",
        f"Namespace:     {doc['namespace']}",
        f"Task:          {doc['task']}"
        + (f" (generation {doc['taskGeneration']})" if doc.get("taskGeneration") else ""),
        f"Queue:         {doc.get('queue') or '-'}",
        f"Phase:         {doc['phase']}",
        f"Created:       {doc['createdAt']}",
        f"Finished:      {doc.get('finishedAt') or '-'}",
        f"Deleted:       {doc.get('deletedAt') or '- (its TaskRun exists: cairn describe without --archived)'}",
        f"Kept until:    {doc.get('retainUntil') or '-'}",
        f"Payload:       {(doc.get('payload') or '-')[:200]}",
        f"Result:        {json.dumps(doc['result'])[:200] if doc.get('resultRecorded') else '-'}",
        "Attempts (from history):",
    ]
    by_attempt: dict[int, list[str]] = {}
    for s in doc["steps"]:
        by_attempt.setdefault(s["attempt"], []).append(s["key"])
    if by_attempt.get(0):
        lines.append(f"  copied (a fork): {', '.join(by_attempt[0])}")
    for a in doc["attempts"]:
        ran = ", ".join(by_attempt.get(a["number"], [])) or "no step"
        ended = (
            f"ended {a['endedAt']}: {a.get('reason') or '?'} (exit {a.get('exitCode')})"
            if a.get("endedAt")
            else "not ended"
        )
        lines.append(f"  Attempt {a['number']} (pod {a['pod']}, started {a.get('startedAt')}): {ended}; steps: {ran}")
    if not doc["attempts"]:
        lines.append("  (no attempt)")
    lines.append(f"Steps: {len(doc['steps'])} recorded (cairn steps {doc['name']})")
    return "\n".join(lines)
