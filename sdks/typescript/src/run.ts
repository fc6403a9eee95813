#!/usr/bin/env node
/** `cairn-run module.js[:export]`: run a task as the container's command.
 *
 * In a pod (CAIRN_API_URL set) it reads the payload and the recorded steps from the checkpoint API,
 * runs the task, records its result, and exits 0. Outside Cairn it runs locally, recording in memory:
 * `cairn-run dist/my-task.js --payload '{"n": 3}'`.
 *
 * Exit codes (the Python runner's): 0 success, or the pod stopped for a durable wait (the run resumes
 * in a new pod); 1 the task threw; 2 it threw AbortTaskRunError, or the payload or arguments are
 * unusable; 3 a step's result could not be recorded; 75 the attempt was superseded or the run ended
 * (this pod should simply stop). */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

import { endpointFromEnv, HttpApi } from "./client.js";
import { Context } from "./context.js";
import { AbortTaskRunError, CairnError, RunEnded, StepResultError, Superseded, WaitSuspended } from "./errors.js";
import { encode } from "./json.js";
import { isTask, type Task } from "./task.js";

export const EXIT = { failed: 1, fatal: 2, unrecordable: 3, stop: 75 } as const;
const USAGE = "usage: cairn-run MODULE.js[:EXPORT] [--payload JSON]";

class UsageError extends Error {}

/** The SDK's own lines go to stdout, the stream task code prints to, so that `kubectl logs` shows
 * them in the order they were written (a container's two streams are read apart). */
function say(line: string): void {
  process.stdout.write(line + "\n");
}

export async function loadTask(target: string): Promise<Task> {
  const colon = target.lastIndexOf(":");
  const [file, name] = colon > 1 ? [target.slice(0, colon), target.slice(colon + 1)] : [target, undefined];
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(resolve(file)).href)) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`cairn-run: cannot load ${file}: ${(e as Error).message}`);
  }
  if (name !== undefined) {
    const found = module[name];
    if (!isTask(found)) throw new UsageError(`cairn-run: ${file} exports no task named '${name}'`);
    return found;
  }
  if (isTask(module["default"])) return module["default"];
  const tasks = Object.entries(module).filter(([, v]) => isTask(v));
  if (tasks.length === 1) return tasks[0]![1] as Task;
  const names = tasks.map(([k]) => k).join(", ") || "none";
  throw new UsageError(`cairn-run: ${file} must export one task (default, or name it: ${file}:NAME); found ${names}`);
}

function parseArgs(argv: string[]): { target: string; payload: string | undefined } {
  let target: string | undefined;
  let payload: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--payload") {
      payload = argv[++i];
      if (payload === undefined) throw new UsageError(`cairn-run: --payload needs a JSON value\n${USAGE}`);
    } else if (arg === "-h" || arg === "--help") {
      say(USAGE);
      process.exit(0);
    } else if (arg.startsWith("-")) {
      throw new UsageError(`cairn-run: unknown option ${arg}\n${USAGE}`);
    } else if (target === undefined) {
      target = arg;
    } else {
      throw new UsageError(`cairn-run: one module only, got ${target} and ${arg}\n${USAGE}`);
    }
  }
  if (target === undefined) throw new UsageError(USAGE);
  return { target, payload };
}

async function context(payloadArg: string | undefined): Promise<{ ctx: Context; api: HttpApi | null }> {
  if (!process.env["CAIRN_API_URL"]) {
    let payload: unknown = null;
    if (payloadArg !== undefined) {
      try {
        payload = JSON.parse(payloadArg);
      } catch (e) {
        throw new UsageError(`cairn-run: --payload is not JSON: ${(e as Error).message}`);
      }
    }
    const run = { name: "local", uid: "local", namespace: "local" };
    return { ctx: new Context({ run, attempt: 1, payload, steps: [], state: null, api: null, log: say }), api: null };
  }
  const api = new HttpApi(endpointFromEnv(), say);
  const info = await api.getRun();
  const fire = process.env["CAIRN_FIRE_TIME"];
  const ctx = new Context({
    run: info.run,
    attempt: info.attempt,
    payload: info.payload,
    steps: info.steps,
    state: info.state,
    api,
    suspendAfterSeconds: info.suspendAfterSeconds ?? 5,
    schedule: process.env["CAIRN_SCHEDULE"],
    fireTime: fire ? new Date(fire) : undefined,
    log: say,
  });
  return { ctx, api };
}

/** Runs the task; the process's exit code. */
export async function main(argv: string[]): Promise<number> {
  process.on("SIGTERM", () => process.exit(143));
  let ctx: Context | undefined;
  try {
    const args = parseArgs(argv);
    const task = await loadTask(args.target);
    const made = await context(args.payload);
    ctx = made.ctx;
    say(`cairn: run ${ctx.runName} attempt ${ctx.attempt}: ${ctx.completedSteps.length} steps already recorded`);
    let payload: unknown = ctx.payload;
    if (task.parsePayload) {
      try {
        payload = task.parsePayload(ctx.payload);
      } catch (e) {
        throw new AbortTaskRunError(`the payload is unusable: ${(e as Error).message}`);
      }
    }
    const result = await task.run(payload, ctx);
    if (ctx.suspended) throw ctx.suspended; // the task caught the wait's error: the pod ends all the same
    const encoded = encode("result", result);
    if (made.api) await made.api.recordResult({ result: encoded });
    else say(JSON.stringify(encoded, null, 2));
  } catch (e) {
    return failure(ctx?.suspended ?? e);
  }
  say(`cairn: attempt ${ctx.attempt} done; steps executed in this attempt: ${ctx.executed.join(", ") || "none"}`);
  return 0;
}

function failure(e: unknown): number {
  if (e instanceof WaitSuspended) {
    say(`cairn: ${e.message}`);
    return 0;
  }
  if (e instanceof UsageError) {
    say(e.message);
    return EXIT.fatal;
  }
  if (e instanceof Superseded || e instanceof RunEnded) {
    say(`cairn: stopping: ${e.message}`);
    return EXIT.stop;
  }
  if (e instanceof StepResultError) {
    say(`cairn: ${e.message}`);
    return EXIT.unrecordable;
  }
  if (e instanceof AbortTaskRunError) {
    say(`cairn: fatal: ${e.message}`);
    return EXIT.fatal;
  }
  if (e instanceof CairnError) {
    say(`cairn: ${e.message}`);
    return EXIT.failed;
  }
  // The task's own failure: its stack, then one last line that becomes the attempt's message.
  const err = e instanceof Error ? e : new Error(String(e));
  say(err.stack ?? String(err));
  say(`${err.name}: ${err.message}`);
  return EXIT.failed;
}

const invoked = process.argv[1] ? pathToFileURL(resolve(process.argv[1])).href : "";
if (import.meta.url === invoked || process.argv[1]?.endsWith("/cairn-run")) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      say(`cairn-run: ${String(e)}`);
      process.exit(EXIT.failed);
    },
  );
}
