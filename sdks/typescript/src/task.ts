/** A task: what a Node.js container of Cairn runs. `task()` names it and gives its function; the
 * runner (`cairn-run module.js`) calls it with the run's payload and a Context.
 *
 *     export default task({
 *       id: "process-video",
 *       run: async (payload: { url: string }, ctx) => {
 *         const file = await ctx.step("download", () => download(payload.url));
 *         return { bytes: file.bytes };
 *       },
 *     });
 *
 * `id` is the Task's name in Kubernetes: the one child runs are started by (`ctx.triggerAndWait(task,
 * payload)` with this value gives typed payloads and results). */

import type { Context } from "./context.js";

export interface TaskOptions<P, R> {
  /** The Task's name (metadata.name of its Task object). */
  id: string;
  /** Checks the payload and gives it its type; what it throws fails the run at once (exit 2). */
  payload?: (raw: unknown) => P;
  run: (payload: P, ctx: Context) => Promise<R> | R;
}

export interface Task<P = unknown, R = unknown> {
  readonly id: string;
  readonly kind: "cairn.task";
  readonly parsePayload: ((raw: unknown) => P) | undefined;
  readonly run: (payload: P, ctx: Context) => Promise<R> | R;
  /** Types only: what `ctx.triggerAndWait` infers payloads and results from. */
  readonly __types?: [P, R];
}

export function task<P = unknown, R = unknown>(options: TaskOptions<P, R>): Task<P, R> {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(options.id) || options.id.length > 253) {
    throw new TypeError(
      `task id '${options.id}' must be a Kubernetes name (lowercase letters, digits, '-' and '.'): it is the Task's name`,
    );
  }
  return { id: options.id, kind: "cairn.task", parsePayload: options.payload, run: options.run };
}

export function isTask(value: unknown): value is Task {
  return typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "cairn.task";
}
