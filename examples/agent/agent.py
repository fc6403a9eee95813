"""An agent-style task: ask a model for a plan, run the tools it asks for, ask it for the answer.

Every model call and every tool call is a step: when the pod dies halfway, the new attempt replays
the recorded calls (no second bill for the same LLM call) and continues with the next one. Each
request carries the step's idempotency key, so a model gateway that deduplicates can do so.

With `"approve_tools": true` in the payload the agent asks a person before it acts: it creates a wait
token, prints how to approve, and waits with no pod and no queue slot until someone runs `cairn
approve RUN` (or POSTs `{"approved": true}` to the printed URL). Without an approval it does nothing.

MODEL_URL points at an OpenAI-style chat endpoint; `python -m examples.agent.fake_model` serves a
deterministic one for trying this out.
"""

from __future__ import annotations

import ast
import json
import operator
import os
import urllib.request
from typing import Any

from cairn.sdk import Context, Fatal, TokenResult

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _post(url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - MODEL_URL is the operator's choice
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def call_model(ctx: Context, messages: list[dict[str, Any]]) -> dict[str, Any]:
    url = os.environ.get("MODEL_URL")
    if not url:
        raise Fatal("MODEL_URL is not set: point it at a chat endpoint (or the fake model server)")
    reply = _post(
        f"{url.rstrip('/')}/v1/chat/completions", {"model": "any", "messages": messages}, ctx.idempotency_key()
    )
    return dict(reply["choices"][0]["message"])


def calculate(expression: str) -> float:
    """Arithmetic only: the model's expression is parsed, never evaluated as code."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](walk(node.left), walk(node.right)))
        raise ValueError(f"not arithmetic: {expression!r}")

    return round(walk(ast.parse(expression, mode="eval")), 4)


def run_tool(ctx: Context, call: dict[str, Any]) -> dict[str, Any]:
    args = json.loads(call["function"]["arguments"])
    name = call["function"]["name"]
    if name == "calculate":
        return {"tool_call_id": call["id"], "content": str(calculate(args["expression"]))}
    if name == "search":
        url = f"{os.environ['MODEL_URL'].rstrip('/')}/v1/search"
        found = _post(url, {"query": args["query"]}, ctx.idempotency_key())
        return {"tool_call_id": call["id"], "content": json.dumps(found["results"])}
    raise Fatal(f"the model asked for an unknown tool {name!r}")


def ask_for_approval(run: str, url: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Tell a person what the agent wants to do and how to allow it (a real agent would post this to
    a chat channel or a ticket; the URL needs no credentials, only its secret)."""
    wanted = ", ".join(f"{c['function']['name']}({c['function']['arguments']})" for c in calls)
    print(f"approval needed for {len(calls)} tool call(s): {wanted}")
    print(f"approve with: cairn approve {run}    or: curl -X POST -d '{{\"approved\": true}}' {url}")
    return {"asked": len(calls)}


def main(ctx: Context) -> dict[str, Any]:
    question = (ctx.payload or {}).get("question")
    if not question:
        raise Fatal("the payload needs a 'question'")
    limit = int((ctx.payload or {}).get("max_tool_calls", 3))
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    plan = ctx.step("plan", call_model, ctx, messages)
    messages.append(plan)
    calls = (plan.get("tool_calls") or [])[:limit]
    if calls and (ctx.payload or {}).get("approve_tools"):
        timeout = float((ctx.payload or {}).get("approval_timeout", 86400))
        token = ctx.create_token("approval", timeout=timeout, tags=["agent"])
        ctx.step("ask", ask_for_approval, ctx.run_name, token.url, calls)
        decision: TokenResult[Any] = ctx.wait_for_token("approved", token)  # no pod, no slot until then
        if not decision.ok or not (decision.data or {}).get("approved"):
            return {"answer": None, "refused": "timed out" if decision.timed_out else "not approved", "tool_calls": 0}
    for call in calls:
        result = ctx.step("tool", run_tool, ctx, call)
        messages.append({"role": "tool", **result})
    answer = ctx.step("answer", call_model, ctx, messages)
    return {"answer": answer["content"], "tool_calls": len(messages) - 2}
