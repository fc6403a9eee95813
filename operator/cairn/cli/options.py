"""The options every command shares (kubectl's names), and the consoles commands print to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType

from cairn.cli.kube import Kube, Target, connect
from cairn.cli.render import Output, as_list, dump, plain

PIPE_WIDTH = 10_000  # not a terminal: never wrap or cut a table

Namespace = Annotated[
    str | None,
    typer.Option(
        "-n",
        "--namespace",
        metavar="NAMESPACE",
        help="Namespace (default: the context's, else default).",
        show_default=False,
    ),
]
Context = Annotated[
    str | None, typer.Option("--context", metavar="CONTEXT", help="Kubeconfig context to use.", show_default=False)
]
Kubeconfig = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        metavar="FILE",
        help="Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).",
        show_default=False,
    ),
]
AllNamespaces = Annotated[bool, typer.Option("-A", "--all-namespaces", help="List across all namespaces.")]
OutputFormat = Annotated[
    Output | None,
    typer.Option(
        "-o", "--output", help="Output format: wide, json, yaml or name (default: a table).", show_default=False
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="With --wait: give up after this many seconds (exit 7; the run goes on).",
        min=0,
    ),
]


def console(*, stderr: bool = False) -> Console:
    """A console that prints text as given (no markup, no highlighting), never wrapping when piped."""
    out = Console(stderr=stderr, highlight=False, markup=False, emoji=False, soft_wrap=True)
    if not out.is_terminal:
        out.width = PIPE_WIDTH
    return out


def show(out: Console, renderable: RenderableType) -> None:
    """Print a table: styled on a terminal, as plain text without trailing spaces elsewhere."""
    if out.is_terminal:
        out.print(renderable)
    else:
        out.print(plain(renderable, PIPE_WIDTH))


def listed_as_data(bodies: list[dict[str, Any]], output: Output | None, noun: str, where: str) -> bool:
    """The part every list command shares: -o json|yaml prints the List; nothing found says so (on
    stderr). True when that was all there was to print."""
    if output in (Output.JSON, Output.YAML):
        console().print(dump(as_list(bodies), output))
        return True
    if not bodies:
        console(stderr=True).print(f"No {noun} found {where}.")
        return True
    return False


@contextmanager
def session(namespace: str | None, context: str | None, kubeconfig: str | None) -> Iterator[Kube]:
    kube = connect(Target(kubeconfig=kubeconfig, context=context, namespace=namespace))
    try:
        yield kube
    finally:
        kube.close()
