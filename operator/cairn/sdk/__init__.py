"""The Cairn SDK for tasks (light: pydantic and httpx, nothing of the operator).

    from cairn.sdk import Context

    def main(ctx: Context) -> dict:
        data = ctx.step("download", download, ctx.payload["url"])
        return ctx.step("summarise", summarise, data)

Run it as the container's command: `python -m cairn.run my_module:main`.
"""

from cairn.sdk.client import ApiRefused, CairnError, RunEnded, Superseded
from cairn.sdk.context import Context, Fatal, StepResultError

__all__ = ["ApiRefused", "CairnError", "Context", "Fatal", "RunEnded", "StepResultError", "Superseded"]
