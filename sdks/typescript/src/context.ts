/** The task's side of Cairn: `ctx.step` runs a function once per run and returns its recorded
 * result on every later attempt.
 *
 *     const page = await ctx.step("fetch", () => fetchPage(payload.url));   // recorded as fetch#0
 *     for (const item of page.items) await ctx.step("process", () => process(item)); // process#0, #1, ...
 *
 * Guarantees: a step whose result was recorded never runs again for this run; a step runs at least
 * once (a pod can die after the work and before the record: give external systems
 * `ctx.idempotencyKey()`). Keys are taken when `step` is called, so steps started together
 * (`Promise.all`) keep the order they were called in, on every attempt. */

import { AsyncLocalStorage } from "node:async_hooks";
import { setTimeout as sleep } from "node:timers/promises";

import type { CheckpointApi, Schemas } from "./client.js";
import { CairnError, WaitSuspended } from "./errors.js";
import { encode, type Json } from "./json.js";
import { retries, retryDelay, retryPolicy, type StepRetry } from "./retry.js";
import type { ChildResult, ChildRun, Token, TokenResult, TriggerOptions } from "./waits.js";

const currentStep = new AsyncLocalStorage<string>();
const BATCH_STEPS = 100; // at most this many steps in one write (POST /v1/steps/batch)
const BATCH_BYTES = 1024 * 1024; // and their results at most this much JSON (the API takes bodies up to 2 MiB)

export interface StepOptions {
  /** Try a failing step again in this pod, with backoff, before the attempt fails. */
  retry?: StepRetry;
}

export interface RunInfo {
  namespace: string;
  name: string;
  uid: string;
}

export interface ContextInit {
  run: RunInfo;
  attempt: number;
  payload: unknown;
  steps: ReadonlyArray<{ key: string; result: unknown }>;
  state: unknown;
  api: CheckpointApi | null;
  suspendAfterSeconds?: number;
  schedule?: string | undefined;
  fireTime?: Date | undefined;
  log?: (line: string) => void;
  /** An answer of the API younger than this (seconds; default 1) makes a new step's start check
   * redundant: see `justConfirmed`. */
  startCheckSeconds?: number;
}

/** A task (a Task's name, or the value `task()` returned), for child runs with typed results. */
export type TaskRef<P = unknown, R = unknown> = string | { readonly id: string; readonly __types?: [P, R] };

export class Context {
  readonly runName: string;
  readonly runUid: string;
  readonly namespace: string;
  /** This pod's attempt (1 for the first). */
  readonly attempt: number;
  /** The Schedule that started this run and the fire time it was started for, if one did. */
  readonly schedule: string | undefined;
  readonly fireTime: Date | undefined;
  /** The state saved by `saveState` on an earlier attempt (or this one). */
  state: unknown;
  /** Steps this attempt executed (not replayed), in the order they finished. */
  readonly executed: string[] = [];
  /** Set once a wait has ended this pod: the runner then exits 0 and records nothing. */
  suspended: WaitSuspended | null = null;
  readonly suspendAfterSeconds: number;

  private readonly recorded = new Map<string, Json>();
  private readonly order: string[] = [];
  private readonly occurrences = new Map<string, number>();
  private readonly kinds = new Map<string, string>();
  private readonly api: CheckpointApi | null;
  private readonly log: (line: string) => void;
  private readonly startCheckMs: number;
  /** When the API last answered a call of this attempt (performance.now(); the runner's GET /v1/run). */
  private confirmed: number | null;

  constructor(init: ContextInit) {
    this.runName = init.run.name;
    this.runUid = init.run.uid;
    this.namespace = init.run.namespace;
    this.attempt = init.attempt;
    this.payloadValue = init.payload;
    this.state = init.state;
    this.api = init.api;
    this.schedule = init.schedule;
    this.fireTime = init.fireTime;
    this.suspendAfterSeconds = init.suspendAfterSeconds ?? 5;
    this.log = init.log ?? ((line) => console.error(line));
    this.startCheckMs = (init.startCheckSeconds ?? 1) * 1000;
    this.confirmed = init.api ? performance.now() : null;
    for (const s of init.steps) {
      this.recorded.set(s.key, s.result as Json);
      this.order.push(s.key);
    }
  }

  private readonly payloadValue: unknown;
  get payload(): unknown {
    return this.payloadValue;
  }

  /** The keys of the steps recorded so far (by earlier attempts, then this one). */
  get completedSteps(): string[] {
    return [...this.order];
  }

  // -- keys -----------------------------------------------------------------------------------------
  private nextKey(name: string, kind = "step"): string {
    this.refuseIfSuspended();
    if (!name || name.includes("#")) {
      throw new TypeError(`step name '${name}' must be non-empty and contain no '#'`);
    }
    const before = this.kinds.get(name) ?? kind;
    this.kinds.set(name, before);
    if (before !== kind) {
      throw new TypeError(
        `step name '${name}' is already used for a ${before} in this run: give the ${kind} its own name`,
      );
    }
    const n = this.occurrences.get(name) ?? 0;
    this.occurrences.set(name, n + 1);
    return `${name}#${n}`;
  }

  private refuseIfSuspended(): void {
    if (this.suspended) {
      throw new WaitSuspended(`this pod is ending for a wait (${this.suspended.message}); nothing more can run in it`);
    }
  }

  /** run uid + step key: the same on every attempt, so an external system can deduplicate. */
  idempotencyKey(step?: string): string {
    const key = step ?? currentStep.getStore();
    if (key === undefined) {
      throw new CairnError("idempotencyKey() outside a step needs the step key, e.g. 'charge#0'");
    }
    return `${this.runUid}:${key}`;
  }

  private remember(key: string, result: unknown): Json {
    const value = (result ?? null) as Json;
    this.recorded.set(key, value);
    this.order.push(key);
    return value;
  }

  // -- steps ----------------------------------------------------------------------------------------
  /** Run `fn` as step `name` unless it was recorded; its (recorded) result. */
  step<T>(name: string, fn: () => T | Promise<T>, options: StepOptions = {}): Promise<Awaited<T>> {
    try {
      // The key is taken now, not after an await, so that Promise.all keeps the order of the calls.
      const key = this.nextKey(name);
      const policy = options.retry ? retryPolicy(options.retry) : null;
      return this.runStep(key, fn, policy);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private async runStep<T>(
    key: string,
    fn: () => T | Promise<T>,
    policy: ReturnType<typeof retryPolicy> | null,
  ): Promise<Awaited<T>> {
    if (this.recorded.has(key)) return this.recorded.get(key) as Awaited<T>;
    if (this.api && !this.justConfirmed()) {
      const check = await this.call(() => this.api!.startStep({ key }));
      if (check.recorded) return this.remember(key, check.result) as Awaited<T>;
    }
    const startedAt = new Date();
    let tries = 0;
    let result: Awaited<T>;
    for (;;) {
      tries++;
      try {
        result = await currentStep.run(key, async () => await fn());
        break;
      } catch (e) {
        if (!policy || !retries(policy, e, tries)) throw e;
        const wait = retryDelay(policy, tries);
        this.log(
          `cairn: step ${key}: try ${tries} of ${policy.maxAttempts} failed (${describe(e)}); ` +
            `retrying in ${wait.toFixed(1)}s`,
        );
        await sleep(wait * 1000);
      }
    }
    this.refuseIfSuspended();
    const encoded = encode(key, result);
    this.executed.push(key);
    if (!this.api) return this.remember(key, encoded) as Awaited<T>;
    const body: Schemas["StepRecord"] = { key, result: encoded, startedAt: startedAt.toISOString() };
    if (tries > 1) body.tries = tries;
    const answer = await this.recordTogether(body);
    // Recorded now: answered without the result (it is what was sent); recorded before: the first result.
    return this.remember(key, "result" in answer ? answer.result : encoded) as Awaited<T>;
  }

  private pending: Array<{ body: Schemas["StepRecord"]; resolve: (a: Schemas["StepRecorded"]) => void; reject: (e: unknown) => void }> = [];
  private flushing: Promise<void> | null = null;

  /** Record a step in one write with the steps that finish with it: those of the same turn of the event
   * loop (Promise.all), and those that finish while an earlier write is on its way (POST
   * /v1/steps/batch; alone, POST /v1/steps). */
  private recordTogether(body: Schemas["StepRecord"]): Promise<Schemas["StepRecorded"]> {
    return new Promise((resolve, reject) => {
      this.pending.push({ body, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  private async flush(): Promise<void> {
    await new Promise((r) => setImmediate(r)); // the steps finishing in this same turn join the write
    while (this.pending.length > 0) {
      const group: typeof this.pending = [];
      let size = 0;
      while (this.pending.length > 0 && group.length < BATCH_STEPS) {
        const n = JSON.stringify(this.pending[0]!.body.result ?? null).length;
        if (group.length > 0 && size + n > BATCH_BYTES) break;
        group.push(this.pending.shift()!);
        size += n;
      }
      try {
        const answers =
          group.length === 1
            ? [await this.call(() => this.api!.recordStep(group[0]!.body))]
            : (await this.call(() => this.api!.recordSteps({ steps: group.map((g) => g.body) }))).steps;
        group.forEach((g, i) => g.resolve(answers[i]!));
      } catch (e) {
        for (const g of group) g.reject(e); // every step of the write hears why it failed
      }
    }
    // Cleared with no await after seeing nothing pending: a step finishing later starts a new write.
    this.flushing = null;
  }

  /** A call to the API; its answer confirms that this attempt is still the run's current one. */
  private async call<R>(f: () => Promise<R>): Promise<R> {
    const answer = await f();
    this.confirmed = performance.now();
    return answer;
  }

  /** Whether the API answered within startCheckSeconds. Writes are fenced to the current attempt, so no
   * other attempt can record a step meanwhile: what the start check (POST /v1/steps/start) adds is
   * learning, before the work, that this pod was superseded, and an answer this fresh already said it
   * was not. A new step then costs one round trip, not two. */
  private justConfirmed(): boolean {
    return this.confirmed !== null && performance.now() - this.confirmed < this.startCheckMs;
  }

  // -- state ----------------------------------------------------------------------------------------
  /** Save explicit progress (e.g. the index reached in a long loop): `ctx.state` on the next attempt.
   * `note` (e.g. "processed 1200 of 5000") shows in `kubectl get` and `cairn describe`. */
  async saveState(state: unknown, note?: string): Promise<void> {
    this.refuseIfSuspended();
    const encoded = encode("state", state);
    this.state = encoded;
    if (this.api) await this.call(() => this.api!.saveState(note === undefined ? { state: encoded } : { state: encoded, note }));
  }

  // -- durable waits ----------------------------------------------------------------------------------
  /** Sleep durably for `seconds`. Longer than the Task's suspendAfter, the pod ends and gives its slot
   * back, and a new pod resumes the run when the time has come; shorter, it sleeps in place. Recorded
   * as step `name#n`: once over, it is never slept again. */
  async sleep(name: string, seconds: number): Promise<void> {
    if (!(seconds >= 0)) throw new RangeError(`sleep '${name}': the duration ${seconds}s is negative`);
    await this.sleepTo(this.nextKey(name, "sleep"), new Date(Date.now() + seconds * 1000));
  }

  /** Sleep durably until `when`, as `sleep` does. */
  async sleepUntil(name: string, when: Date): Promise<void> {
    const key = this.nextKey(name, "sleep");
    if (!this.recorded.has(key) && when.getTime() < Date.now() - 1000) {
      throw new RangeError(`sleepUntil '${name}' (${key}): ${when.toISOString()} is in the past`);
    }
    await this.sleepTo(key, when);
  }

  private async sleepTo(key: string, until: Date): Promise<void> {
    if (this.recorded.has(key)) return;
    const left = (until.getTime() - Date.now()) / 1000;
    if (!this.api || left <= this.suspendAfterSeconds) {
      await sleep(Math.max(0, left) * 1000);
      const answer = this.api ? ((await this.call(() => this.api!.recordStep({ key, result: null }))).result ?? null) : null;
      this.remember(key, answer);
      return;
    }
    await this.waitFor(key, () => this.api!.wait({ key, kind: "sleep", until: until.toISOString() }),
      `sleeping until ${until.toISOString()}`);
  }

  /** Register a wait: its result if it is over, else this pod ends (WaitSuspended). */
  private async waitFor(key: string, call: () => Promise<Schemas["WaitAnswer"]>, what: string): Promise<Json> {
    const answer = await this.call(call);
    if (answer.done) return this.remember(key, answer.result);
    this.suspended = new WaitSuspended(
      `${what} (step ${key}): this pod ends; the run resumes in a new pod when the wait is over`,
    );
    throw this.suspended;
  }

  private needsCairn(what: string): CheckpointApi {
    if (!this.api) throw new CairnError(`${what} need Cairn (run the task in a TaskRun)`);
    return this.api;
  }

  /** A wait token for an approval or any external event (recorded: a retried attempt gets the same
   * one). Hand its `url` or `id` to whoever completes it; then `waitForToken`. */
  async createToken(name: string, options: { timeoutSeconds?: number; tags?: string[] } = {}): Promise<Token> {
    const key = this.nextKey(name, "token");
    if (!this.recorded.has(key)) {
      const api = this.needsCairn(`createToken '${name}': wait tokens`);
      const body: Schemas["TokenRequest"] = { key, tags: options.tags ?? [] };
      if (options.timeoutSeconds !== undefined) body.timeoutSeconds = options.timeoutSeconds;
      this.remember(key, (await this.call(() => api.createToken(body))).result);
    }
    const doc = this.recorded.get(key) as { id: string; url: string; timeout?: string | null };
    return { id: doc.id, url: doc.url, timeout: doc.timeout ? new Date(doc.timeout) : null };
  }

  /** Wait (durably, with no pod) until the token is completed or times out. */
  async waitForToken<T = unknown>(name: string, token: Token | string): Promise<TokenResult<T>> {
    const key = this.nextKey(name, "token wait");
    const id = typeof token === "string" ? token : token.id;
    if (!this.recorded.has(key)) {
      const api = this.needsCairn(`waitForToken '${name}': wait tokens`);
      await this.waitFor(key, () => api.wait({ key, kind: "token", token: id }), `waiting for token ${id}`);
    }
    const doc = (this.recorded.get(key) ?? {}) as { ok?: boolean; data?: T; timedOut?: boolean };
    return { ok: Boolean(doc.ok), data: doc.ok ? (doc.data ?? null) : null, timedOut: Boolean(doc.timedOut) };
  }

  // -- child runs -------------------------------------------------------------------------------------
  /** Start a child run and go on (its name is returned; a retried attempt never starts a second one). */
  async trigger<P>(name: string, task: TaskRef<P>, payload?: P, options: TriggerOptions = {}): Promise<string> {
    const key = this.nextKey(name, "child run");
    if (!this.recorded.has(key)) {
      const body = this.childrenBody(key, [{ task, payload, ...options }], false, options);
      const api = this.needsCairn(`step '${key}': child runs`);
      const answer = await this.call(() => api.startChildren(body));
      this.remember(key, answer.result);
    }
    return String((this.recorded.get(key) as { runs: string[] }).runs[0]);
  }

  /** Start a child run and wait for it with no pod held: its result, or how it failed (check `ok`;
   * nothing is thrown). */
  async triggerAndWait<P, R>(
    name: string,
    task: TaskRef<P, R>,
    payload?: P,
    options: TriggerOptions = {},
  ): Promise<ChildResult<R>> {
    const [one] = await this.batchTriggerAndWait<P, R>(name, [{ task, payload, ...options }], options);
    return one!;
  }

  /** Fan out: one child run per item, then wait for all of them with no pod held. Results in the
   * order of `items`. */
  async batchTriggerAndWait<P, R>(
    name: string,
    items: ReadonlyArray<ChildRun<P, R>>,
    options: Pick<TriggerOptions, "parentClosePolicy"> = {},
  ): Promise<ChildResult<R>[]> {
    const key = this.nextKey(name, "child run");
    if (!this.recorded.has(key)) {
      if (items.length === 0) throw new TypeError(`batchTriggerAndWait '${name}': no items`);
      const body = this.childrenBody(key, items, true, options);
      const api = this.needsCairn(`step '${key}': child runs`);
      await this.waitFor(key, () => api.startChildren(body), `waiting for ${items.length} child run(s)`);
    }
    const docs = (this.recorded.get(key) ?? []) as Array<{ run: string; phase: string; ok?: boolean; result?: R }>;
    return docs.map((d) => ({ run: d.run, phase: d.phase, ok: Boolean(d.ok), result: d.ok ? (d.result ?? null) : null }));
  }

  private childrenBody(
    key: string,
    items: ReadonlyArray<ChildRun<unknown, unknown>>,
    wait: boolean,
    options: Pick<TriggerOptions, "parentClosePolicy">,
  ): Schemas["ChildrenRequest"] {
    return {
      key,
      wait,
      parentClosePolicy: options.parentClosePolicy ?? "Cancel",
      items: items.map((c) => {
        encode(key, c.payload); // a payload that is not JSON fails here, naming the step
        const item: Schemas["ChildrenRequest"]["items"][number] = {
          task: typeof c.task === "string" ? c.task : c.task.id,
          payload: c.payload === undefined ? null : c.payload,
          priority: c.priority ?? 0,
        };
        if (c.queue !== undefined) item.queue = c.queue;
        if (c.concurrencyKey !== undefined) item.concurrencyKey = c.concurrencyKey;
        return item;
      }),
    };
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
