// TypeScript tasks of the end-to-end tests (tests/e2e/test_typescript.py), compiled by
// hack/build-typescript.sh and mounted into pods from a ConfigMap. hit() reports one execution to
// the test's side channel (tests/support/runs.py: StepCounter).
import { task, type Context } from "@cairn-dev/sdk";

async function hit(ctx: Context, what: string): Promise<void> {
  const url = process.env["COUNTER_URL"];
  // No counter is a broken test, not a quiet one: the counts it asserts would read 0.
  if (!url) throw new Error("hit(): COUNTER_URL is not set; give the task a counter");
  const q = new URLSearchParams({ run: ctx.runName, what, attempt: String(ctx.attempt) });
  const answer = await fetch(`${url}?${q}`, { signal: AbortSignal.timeout(10_000) });
  if (!answer.ok) throw new Error(`counter answered ${answer.status}`);
}

/** A child (of a Python parent): squares a number. */
export const square = task({
  id: "ts-square",
  run: async (payload: { n: number }, ctx) => {
    return ctx.step("square", async () => {
      await hit(ctx, "square");
      return { square: payload.n * payload.n, by: "typescript" };
    });
  },
});

interface PySquare {
  square: number;
  by: string;
}

/** A parent that waits, with no pod, on a child written in Python (Task py-square). */
export const parent = task({
  id: "ts-parent",
  run: async (payload: { n: number }, ctx) => {
    await ctx.step("before", () => hit(ctx, "before"));
    const child = await ctx.triggerAndWait<{ n: number }, PySquare>("child", "py-square", { n: payload.n });
    if (!child.ok || !child.result) throw new Error(`the child ${child.run} ended ${child.phase}`);
    const plus = await ctx.step("after", async () => {
      await hit(ctx, "after");
      return child.result!.square + 1;
    });
    return { child: child.result, plusOne: plus, childRun: child.run, attempt: ctx.attempt };
  },
});

/** Waits for a person's approval (a wait token), then acts on it. */
export const approval = task({
  id: "ts-approval",
  run: async (_payload: unknown, ctx) => {
    const token = await ctx.createToken("approval", { timeoutSeconds: 600, tags: ["ts"] });
    await ctx.step("ask", async () => {
      await hit(ctx, "ask");
      console.log(`approve at ${token.url}`);
    });
    const answer = await ctx.waitForToken<{ by: string }>("approved", token);
    if (!answer.ok) return { timedOut: answer.timedOut };
    return ctx.step("act", async () => {
      await hit(ctx, "act");
      return { acted: answer.data };
    });
  },
});
