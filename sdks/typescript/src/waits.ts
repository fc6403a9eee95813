/** What durable waits and child runs give back to task code. */

import type { TaskRef } from "./context.js";

/** A wait token: complete it by a POST of JSON to `url` (no credentials: the secret is in the URL),
 * by `cairn tokens complete ID` / `cairn approve RUN`, or with a TokenCompletion object. */
export interface Token {
  readonly id: string;
  readonly url: string;
  readonly timeout: Date | null;
}

/** The data a token was completed with, or timedOut (then ok is false and data null). */
export interface TokenResult<T> {
  readonly ok: boolean;
  readonly data: T | null;
  readonly timedOut: boolean;
}

/** How a child run ended: ok (Succeeded) with its result, or its phase (Failed, Cancelled, Deleted). */
export interface ChildResult<R> {
  readonly run: string;
  readonly phase: string;
  readonly ok: boolean;
  readonly result: R | null;
}

export interface TriggerOptions {
  queue?: string;
  priority?: number;
  concurrencyKey?: string;
  /** What becomes of the child if the parent ends first: Cancel (the default) or Abandon. */
  parentClosePolicy?: "Cancel" | "Abandon";
}

/** One child of batchTriggerAndWait: a Task (its name, or what `task()` returned) and its payload. */
export interface ChildRun<P, R> {
  task: TaskRef<P, R>;
  payload?: P | undefined;
  queue?: string;
  priority?: number;
  concurrencyKey?: string;
}
