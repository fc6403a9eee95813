"""Running the operator: `cairn operator` / `python -m cairn operator`."""

from __future__ import annotations

import kopf

from cairn.config import Settings


def run_operator(config: Settings) -> None:
    from cairn.handlers import wiring  # noqa: F401 - registers the handlers with kopf

    liveness = f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=config),
    )
