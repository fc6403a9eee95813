/** Retrying a step inside its pod, before the attempt is given up (as Temporal's activities and
 * DBOS's steps do): a flaky call is tried again with backoff, and only the last failure ends the
 * attempt. The same rule as the Python SDK's StepRetry. */

import { CairnError, WaitSuspended } from "./errors.js";

export interface StepRetry {
  /** Tries in all, the first included (default 3). */
  maxAttempts?: number;
  /** Seconds to wait after the first failure (default 1). */
  initialDelay?: number;
  /** Each wait is the previous one times this (default 2). */
  factor?: number;
  /** The longest wait, in seconds (default 60). */
  maxDelay?: number;
  /** Which errors to retry (default: all but the SDK's own and AbortTaskRunError). */
  retryOn?: (error: unknown) => boolean;
}

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly initialDelay: number;
  readonly factor: number;
  readonly maxDelay: number;
  readonly retryOn: (error: unknown) => boolean;
}

export function retryPolicy(options: StepRetry): RetryPolicy {
  const policy: RetryPolicy = {
    maxAttempts: options.maxAttempts ?? 3,
    initialDelay: options.initialDelay ?? 1,
    factor: options.factor ?? 2,
    maxDelay: options.maxDelay ?? 60,
    retryOn: options.retryOn ?? (() => true),
  };
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1) {
    throw new RangeError(`retry.maxAttempts must be a whole number of at least 1, not ${policy.maxAttempts}`);
  }
  if (policy.initialDelay < 0 || policy.maxDelay < 0 || policy.factor < 1) {
    throw new RangeError("retry: delays must be >= 0 and factor >= 1");
  }
  return policy;
}

/** Seconds to wait after the `failedTries`-th failure. */
export function retryDelay(policy: RetryPolicy, failedTries: number): number {
  return Math.min(policy.maxDelay, policy.initialDelay * policy.factor ** (failedTries - 1));
}

export function retries(policy: RetryPolicy, error: unknown, tries: number): boolean {
  if (error instanceof CairnError || error instanceof WaitSuspended) return false;
  return tries < policy.maxAttempts && policy.retryOn(error);
}
