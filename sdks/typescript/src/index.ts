/** The Cairn SDK for tasks written in TypeScript (Node.js >= 20; no runtime dependencies).
 *
 *     import { task } from "@cairn-dev/sdk";
 *
 *     export default task({
 *       id: "deploy",
 *       run: async (payload: { version: string }, ctx) => {
 *         const build = await ctx.step("build", () => buildRelease(payload.version));
 *         await ctx.sleep("cool-down", 600);                         // no pod, no slot for 10 minutes
 *         const token = await ctx.createToken("approval", { timeoutSeconds: 86400 });
 *         await ctx.step("ask", () => notifyApprover(token.url));
 *         if (!(await ctx.waitForToken("approved", token)).ok) return { skipped: true };
 *         return ctx.step("release", () => release(build));
 *       },
 *     });
 *
 * Run it as the container's command: `cairn-run dist/deploy.js`. */

export { ApiRefused, AbortTaskRunError, CairnError, RunEnded, StepResultError, Superseded, WaitSuspended } from "./errors.js";
export { Context, type StepOptions, type TaskRef } from "./context.js";
export { encode, RESULT_MAX_BYTES, type Json } from "./json.js";
export type { StepRetry } from "./retry.js";
export { task, type Task, type TaskOptions } from "./task.js";
export type { ChildResult, ChildRun, Token, TokenResult, TriggerOptions } from "./waits.js";
export type { CheckpointApi, Schemas } from "./client.js";
