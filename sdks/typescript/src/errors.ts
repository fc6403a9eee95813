/** The SDK's errors. Their names and messages match the Python SDK's (cairn.sdk), so a task's
 * failure reads the same whatever language it is written in. */

export class CairnError extends Error {
  override name = "CairnError";
}

/** A newer attempt of this run exists (this pod was presumed lost): stop, record nothing. */
export class Superseded extends CairnError {
  override name = "Superseded";
}

/** The run is over (cancelled, failed, or deleted): its credentials no longer work. */
export class RunEnded extends CairnError {
  override name = "RunEnded";
}

/** The API refused a call (a 4xx other than the above): a bug in the task or the SDK. */
export class ApiRefused extends CairnError {
  override name = "ApiRefused";
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
  ) {
    super(`${status}: ${message}`);
  }
}

/** A step's result cannot be recorded (not JSON, or too large). Raised at the step, by name. */
export class StepResultError extends CairnError {
  override name = "StepResultError";
}

/** Throw to end the run now, with no retry (an error a retry cannot fix: a bad payload, a format
 * that is not supported). The runner exits with code 2, which a Task's podFailurePolicy maps to
 * FailRun; the Python SDK's equivalent is `cairn.sdk.Fatal`. */
export class AbortTaskRunError extends CairnError {
  override name = "AbortTaskRunError";
}

/** Thrown by a wait that ends this pod (a long sleep, a token, child runs). The runner exits 0, the
 * run gives its slot back, and a new pod resumes it when the wait is over. Do not swallow it: once
 * a wait has suspended, the context refuses every further call, and the runner exits as suspended
 * whatever the task function returns. */
export class WaitSuspended extends Error {
  override name = "WaitSuspended";
}
