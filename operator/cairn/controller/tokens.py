"""TokenCompletions: complete the token a TokenCompletion names, once, and say how it went."""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError

from cairn.api.tokencompletion import TokenCompletion
from cairn.controller.cache import Body, Key, key_of
from cairn.controller.deps import TOKENS, Deps
from cairn.domain.timefmt import format_time

log = logging.getLogger(__name__)

MESSAGES = {
    "Completed": "completed token {token}: the run waiting for it resumes",
    "AlreadyCompleted": "token {token} was already completed (by {by}); the first completion stands",
    "TimedOut": "token {token} timed out before it was completed",
    "RunEnded": "the run of token {token} has ended: nothing waits for it",
    "NotFound": "no token {token} belongs to a run in this namespace",
}


def on_token_completion(deps: Deps, event: str | None, body: Body) -> None:
    key = key_of(body)
    if event == "DELETED":
        deps.cache.token_completions.pop(key, None)
        return
    deps.cache.token_completions[key] = body
    if not (body.get("status") or {}).get("outcome"):
        deps.enqueue(TOKENS, key)


class TokenCompletionReconciler:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def reconcile(self, key: Key) -> None:
        deps = self.deps
        body = deps.cache.token_completions.get(key)
        if body is None or (body.get("status") or {}).get("outcome"):
            return
        namespace, name = key
        try:
            tc = TokenCompletion.model_validate(body)
            data = json.loads(tc.spec.data) if tc.spec.data is not None else None
        except (ValidationError, json.JSONDecodeError) as e:
            await self._write(body, "InvalidData", f"the TokenCompletion cannot be used: {e}"[:1024], "Warning")
            return
        done = await deps.store.complete_token(
            tc.spec.token, data, by=f"TokenCompletion {namespace}/{name}", namespace=namespace
        )
        if done.woke is not None:
            deps.kick(*done.woke)
        if done.run_uid is not None:
            deps.reconcile_run(done.run_uid)
        message = MESSAGES.get(done.outcome, done.outcome).format(token=tc.spec.token, by=done.completed_by)
        outcome = done.outcome if done.outcome in MESSAGES else "NotFound"
        log.info("%s", message, extra={"namespace": namespace, "tokencompletion": name, "outcome": outcome})
        await self._write(body, outcome, message, "Normal" if outcome == "Completed" else "Warning")

    async def _write(self, body: Body, outcome: str, message: str, type_: str) -> None:
        deps = self.deps
        namespace, name = key_of(body)
        now = deps.clock()
        status = {"outcome": outcome, "message": message, "completionTime": format_time(now)}
        await deps.kube.patch_token_completion_status(namespace, name, status)
        deps.cache.token_completions[(namespace, name)] = {**body, "status": status}
        await deps.kube.post_event(body, type_, outcome, message, now)
