/** The SDK's HTTP client for the checkpoint API: the pod's token on every call (re-read each time:
 * the kubelet rotates it), and patience when the API is briefly away — an upgrade of Cairn must not
 * fail running tasks. Node's fetch keeps connections alive between calls. */

import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

import { ApiRefused, CairnError, RunEnded, Superseded } from "./errors.js";
import type { components } from "./generated/openapi.js";

export type Schemas = components["schemas"];
const RETRYABLE_STATUS = new Set([502, 503, 504]);
const REQUEST_TIMEOUT_MS = 30_000;

export interface Endpoint {
  readonly url: string;
  readonly tokenFile: string;
  /** How long to keep retrying an unavailable API before the attempt fails (seconds). */
  readonly retrySeconds: number;
}

export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): Endpoint {
  const url = env["CAIRN_API_URL"];
  if (!url) throw new CairnError("CAIRN_API_URL is not set: run the task in a TaskRun, or locally with --payload");
  return {
    url: url.replace(/\/+$/, ""),
    tokenFile: env["CAIRN_TOKEN_FILE"] ?? "/var/run/secrets/cairn.dev/token",
    retrySeconds: Number(env["CAIRN_API_RETRY_SECONDS"] ?? "300"),
  };
}

/** The seconds a 429 says to wait (Retry-After), at most a minute. */
export function retryAfter(header: string | null): number {
  const seconds = Number(header ?? "1");
  return Number.isFinite(seconds) ? Math.min(60, Math.max(0, seconds)) : 1;
}

/** The calls of the checkpoint API, typed by the OpenAPI description (src/generated/openapi.ts). */
export interface CheckpointApi {
  getRun(): Promise<Schemas["RunContext"]>;
  startStep(body: Schemas["StepStart"]): Promise<Schemas["StepCheck"]>;
  recordStep(body: Schemas["StepRecord"]): Promise<Schemas["StepRecorded"]>;
  recordSteps(body: Schemas["StepBatch"]): Promise<{ steps: Schemas["StepRecorded"][] }>;
  saveState(body: Schemas["StateSave"]): Promise<void>;
  recordResult(body: Schemas["ResultRecord"]): Promise<void>;
  wait(body: Schemas["WaitRequest"]): Promise<Schemas["WaitAnswer"]>;
  createToken(body: Schemas["TokenRequest"]): Promise<Schemas["TokenCreated"]>;
  startChildren(body: Schemas["ChildrenRequest"]): Promise<Schemas["WaitAnswer"]>;
}

export class HttpApi implements CheckpointApi {
  constructor(
    readonly endpoint: Endpoint,
    private readonly log: (line: string) => void = (line) => console.error(line),
  ) {}

  getRun = () => this.call<Schemas["RunContext"]>("GET", "/v1/run");
  startStep = (body: Schemas["StepStart"]) => this.call<Schemas["StepCheck"]>("POST", "/v1/steps/start", body);
  recordStep = (body: Schemas["StepRecord"]) => this.call<Schemas["StepRecorded"]>("POST", "/v1/steps", body);
  recordSteps = (body: Schemas["StepBatch"]) =>
    this.call<{ steps: Schemas["StepRecorded"][] }>("POST", "/v1/steps/batch", body);
  saveState = async (body: Schemas["StateSave"]) => void (await this.call("PUT", "/v1/state", body));
  recordResult = async (body: Schemas["ResultRecord"]) => void (await this.call("PUT", "/v1/result", body));
  wait = (body: Schemas["WaitRequest"]) => this.call<Schemas["WaitAnswer"]>("POST", "/v1/waits", body);
  createToken = (body: Schemas["TokenRequest"]) => this.call<Schemas["TokenCreated"]>("POST", "/v1/tokens", body);
  startChildren = (body: Schemas["ChildrenRequest"]) =>
    this.call<Schemas["WaitAnswer"]>("POST", "/v1/children", body);

  private headers(): Record<string, string> {
    const token = readFileSync(this.endpoint.tokenFile, "utf8").trim();
    return { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
  }

  /** One call, retried with backoff while the API is unavailable (502/503/504, 429, unreachable),
   * until the endpoint's retry window closes. 409 and 410 end the attempt; other 4xx are refusals. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const deadline = Date.now() + this.endpoint.retrySeconds * 1000;
    for (let attempt = 0; ; attempt++) {
      let problem: string;
      let atLeast = 0;
      try {
        const init: RequestInit = {
          method,
          headers: this.headers(),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        };
        if (body !== undefined) init.body = JSON.stringify(body);
        const response = await fetch(this.endpoint.url + path, init);
        const text = await response.text();
        if (response.status < 400) return (text ? JSON.parse(text) : undefined) as T;
        if (response.status === 429) {
          problem = "HTTP 429: this pod is over its pace of requests";
          atLeast = retryAfter(response.headers.get("Retry-After"));
        } else if (RETRYABLE_STATUS.has(response.status)) {
          problem = `HTTP ${response.status}`;
        } else {
          throw refusal(response.status, text);
        }
      } catch (e) {
        if (e instanceof CairnError) throw e;
        problem = `${(e as Error).name}: ${(e as Error).message}`;
      }
      if (Date.now() > deadline) {
        throw new CairnError(
          `the checkpoint API at ${this.endpoint.url} has been unreachable for ` +
            `${this.endpoint.retrySeconds.toFixed(0)}s (${problem})`,
        );
      }
      const delay = Math.max(atLeast, Math.min(10, 0.2 * 2 ** attempt) * (0.5 + Math.random()));
      this.log(`cairn: checkpoint API unavailable (${problem}); retrying in ${delay.toFixed(1)}s`);
      await sleep(delay * 1000);
    }
  }
}

function refusal(status: number, text: string): CairnError {
  let message = text;
  let code: string | undefined;
  try {
    const doc = JSON.parse(text) as Partial<Schemas["Error"]>;
    message = doc.message ?? text;
    code = doc.error;
  } catch {
    // not JSON: the text is the message
  }
  if (status === 409) return new Superseded(message);
  if (status === 410) return new RunEnded(message);
  return new ApiRefused(status, message, code);
}
