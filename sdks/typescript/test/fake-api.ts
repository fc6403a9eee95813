/** An in-memory checkpoint API on loopback, speaking the protocol of openapi.yaml, for the SDK's
 * tests: it records steps once (the first result stands), can answer 503 or 429 a given number of
 * times first, and keeps every request for the test to inspect. */

import { once } from "node:events";
import { writeFileSync, mkdtempSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Seen {
  method: string;
  path: string;
  body: any;
  auth: string | undefined;
}

export class FakeApi {
  readonly seen: Seen[] = [];
  readonly steps = new Map<string, unknown>();
  state: unknown = null;
  result: unknown = undefined;
  payload: unknown = null;
  attempt = 1;
  /** Answer the next N requests with this status first (503, 429, 409, 410, ...). */
  failures: Array<{ status: number; retryAfter?: string; message?: string }> = [];
  /** How /v1/waits and /v1/children answer: done with a result, or suspend. */
  waitAnswer: (body: any) => any = (body) => ({ key: body.key, done: false, suspend: true });
  readonly tokenFile: string;
  private server: Server;
  url = "";

  constructor() {
    const dir = mkdtempSync(join(tmpdir(), "cairn-token-"));
    this.tokenFile = join(dir, "token");
    writeFileSync(this.tokenFile, "token-1\n");
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  async start(): Promise<this> {
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
  }

  env(): NodeJS.ProcessEnv {
    return { CAIRN_API_URL: this.url, CAIRN_TOKEN_FILE: this.tokenFile, CAIRN_API_RETRY_SECONDS: "20" };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    const body = text ? JSON.parse(text) : undefined;
    this.seen.push({ method: req.method ?? "", path: req.url ?? "", body, auth: req.headers.authorization });
    const send = (status: number, doc?: unknown, headers: Record<string, string> = {}) => {
      const out = doc === undefined ? "" : JSON.stringify(doc);
      res.writeHead(status, { "Content-Type": "application/json", ...headers });
      res.end(out);
    };
    const failure = this.failures.shift();
    if (failure) {
      const headers: Record<string, string> = failure.retryAfter ? { "Retry-After": failure.retryAfter } : {};
      return send(failure.status, { error: "Injected", message: failure.message ?? `injected ${failure.status}` }, headers);
    }
    const route = `${req.method} ${req.url}`;
    switch (route) {
      case "GET /v1/run":
        return send(200, {
          run: { namespace: "ns", name: "r1", uid: "uid-1" },
          attempt: this.attempt,
          payload: this.payload,
          steps: [...this.steps].map(([key, result]) => ({ key, result })),
          state: this.state,
          suspendAfterSeconds: 1,
        });
      case "POST /v1/steps/start":
        return send(200, this.steps.has(body.key) ? { recorded: true, result: this.steps.get(body.key) } : { recorded: false });
      case "POST /v1/steps": {
        const first = !this.steps.has(body.key);
        if (first) this.steps.set(body.key, body.result ?? null);
        return send(first ? 201 : 200, { key: body.key, recorded: true, first, result: this.steps.get(body.key) });
      }
      case "POST /v1/steps/batch": {
        const steps = body.steps.map((one: any) => {
          const first = !this.steps.has(one.key);
          if (first) this.steps.set(one.key, one.result ?? null);
          return { key: one.key, recorded: true, first, result: this.steps.get(one.key) };
        });
        return send(200, { steps });
      }
      case "PUT /v1/state":
        this.state = body.state;
        return send(204);
      case "PUT /v1/result":
        this.result = body.result;
        return send(204);
      case "POST /v1/tokens": {
        const result = this.steps.get(body.key) ?? { id: "tok-1", url: `${this.url}/v1/tokens/tok-1/s3cret`, timeout: null };
        this.steps.set(body.key, result);
        return send(200, { key: body.key, recorded: true, result });
      }
      case "POST /v1/waits":
      case "POST /v1/children": {
        const answer = this.waitAnswer(body);
        if (answer.done) this.steps.set(body.key, answer.result);
        return send(200, answer);
      }
      default:
        return send(404, { error: "NotFound", message: route });
    }
  }
}
