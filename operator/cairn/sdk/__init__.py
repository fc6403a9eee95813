"""The Cairn SDK for tasks (light: pydantic and httpx, nothing of the operator).

    from cairn.sdk import Context

    def main(ctx: Context) -> dict:
        data = ctx.step("download", download, ctx.payload["url"])
        ctx.sleep("cool-down", 600)                              # no pod, no slot for 10 minutes
        token = ctx.create_token("approval", timeout=86400)
        notify_approver(token.url)
        if not ctx.wait_for_token("approved", token).ok:          # no pod until someone answers
            return {"skipped": True}
        return ctx.step("summarise", summarise, data)

Run it as the container's command: `python -m cairn.run my_module:main`.
"""

from cairn.sdk.client import ApiRefused, CairnError, RunEnded, Superseded
from cairn.sdk.context import Context, Fatal, StepResultError
from cairn.sdk.retry import StepRetry
from cairn.sdk.waits import ChildResult, ChildRun, Token, TokenResult, WaitSuspended

__all__ = [
    "ApiRefused",
    "CairnError",
    "ChildResult",
    "ChildRun",
    "Context",
    "Fatal",
    "RunEnded",
    "StepResultError",
    "StepRetry",
    "Superseded",
    "Token",
    "TokenResult",
    "WaitSuspended",
]
