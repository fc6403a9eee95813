import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, before, beforeEach, describe, it } from "node:test";

import { endpointFromEnv, HttpApi } from "../src/client.js";
import { Context } from "../src/context.js";
import { ApiRefused, CairnError, RunEnded, StepResultError, Superseded, WaitSuspended } from "../src/errors.js";
import { encode, RESULT_MAX_BYTES } from "../src/json.js";
import { task } from "../src/task.js";
import { FakeApi } from "./fake-api.js";

const quiet = () => undefined;
const api = new FakeApi();
before(async () => void (await api.start()));
after(async () => api.stop());
beforeEach(() => {
  api.seen.length = 0;
  api.steps.clear();
  api.failures = [];
  api.waitAnswer = (body) => ({ key: body.key, done: false, suspend: true });
});

function http(): HttpApi {
  return new HttpApi(endpointFromEnv(api.env()), quiet);
}

async function attempt(n = 1, startCheckSeconds?: number): Promise<Context> {
  const info = await http().getRun();
  const init = { ...info, attempt: n, api: http(), log: quiet };
  return new Context(startCheckSeconds === undefined ? init : { ...init, startCheckSeconds });
}

describe("steps", () => {
  it("a recorded step is not run again on the next attempt and returns its recorded result", async () => {
    let calls = 0;
    const first = await attempt(1);
    const a = await first.step("fetch", () => ({ n: ++calls }));
    const b = await first.step("fetch", async () => ({ n: ++calls }));
    assert.deepEqual([a, b], [{ n: 1 }, { n: 2 }]);
    assert.deepEqual([...api.steps.keys()], ["fetch#0", "fetch#1"]);

    const second = await attempt(2);
    assert.deepEqual(second.completedSteps, ["fetch#0", "fetch#1"]);
    assert.deepEqual(await second.step("fetch", () => ({ n: ++calls })), { n: 1 });
    assert.deepEqual(await second.step("fetch", () => ({ n: ++calls })), { n: 2 });
    assert.deepEqual(await second.step("fetch", () => ({ n: ++calls })), { n: 3 });
    assert.equal(calls, 3);
    assert.deepEqual(second.executed, ["fetch#2"]);
  });

  it("steps that finish together are recorded in one write, in the order they were called", async () => {
    const ctx = await attempt();
    api.seen.length = 0;
    const out = await Promise.all([1, 2, 3].map((n) => ctx.step("part", async () => n * 10)));
    assert.deepEqual(out, [10, 20, 30]);
    assert.deepEqual(api.seen.map((s) => s.path), ["/v1/steps/batch"]);
    assert.deepEqual(api.seen[0]!.body.steps.map((s: any) => s.key), ["part#0", "part#1", "part#2"]);
    assert.deepEqual(ctx.completedSteps, ["part#0", "part#1", "part#2"]);
  });

  it("steps started together keep the order they were called in, whichever finishes first", async () => {
    const ctx = await attempt();
    const slow = (ms: number, v: string) => new Promise<string>((r) => setTimeout(() => r(v), ms));
    const out = await Promise.all([ctx.step("part", () => slow(60, "a")), ctx.step("part", () => slow(5, "b"))]);
    assert.deepEqual(out, ["a", "b"]);
    assert.deepEqual(api.steps.get("part#0"), "a");
    assert.deepEqual(api.steps.get("part#1"), "b");
  });

  it("a new step right after an answer of the API costs one round trip; after a quiet while, two", async () => {
    const ctx = await attempt();
    api.seen.length = 0;
    await ctx.step("a", () => 1);
    await ctx.step("a", () => 2);
    assert.deepEqual(api.seen.map((s) => s.path), ["/v1/steps", "/v1/steps"]);
    const slow = await attempt(1, 0);
    api.seen.length = 0;
    await slow.step("b", () => 1);
    assert.deepEqual(api.seen.map((s) => s.path), ["/v1/steps/start", "/v1/steps"]);
  });

  it("a step recorded meanwhile (by an attempt presumed lost) is not run: the first result stands", async () => {
    const ctx = await attempt(1, 0); // the start check is made
    api.steps.set("charge#0", { charged: "first" });
    let ran = false;
    assert.deepEqual(await ctx.step("charge", () => ((ran = true), { charged: "again" })), { charged: "first" });
    assert.equal(ran, false);
  });

  it("sends when the work began, and after how many tries a flaky step succeeded", async () => {
    const ctx = await attempt();
    let tries = 0;
    const value = await ctx.step(
      "flaky",
      () => {
        if (++tries < 3) throw new Error(`flake ${tries}`);
        return "ok";
      },
      { retry: { maxAttempts: 3, initialDelay: 0.01 } },
    );
    assert.equal(value, "ok");
    const record = api.seen.find((s) => s.path === "/v1/steps")!.body;
    assert.equal(record.tries, 3);
    assert.ok(!Number.isNaN(Date.parse(record.startedAt)));
  });

  it("a step that fails every try fails the attempt with its own error, and records nothing", async () => {
    const ctx = await attempt();
    await assert.rejects(
      ctx.step("down", () => Promise.reject(new TypeError("still down")), { retry: { maxAttempts: 2, initialDelay: 0 } }),
      /still down/,
    );
    assert.equal(api.steps.size, 0);
  });

  it("names a reused step name and a name with '#'", async () => {
    const ctx = await attempt();
    await ctx.sleep("pause", 0);
    await assert.rejects(ctx.step("pause", () => 1), /already used for a sleep in this run: give the step its own name/);
    await assert.rejects(ctx.step("a#b", () => 1), /must be non-empty and contain no '#'/);
  });

  it("gives an idempotency key of run uid and step key inside a step, and asks for the key outside one", async () => {
    const ctx = await attempt();
    assert.equal(await ctx.step("charge", () => ctx.idempotencyKey()), "uid-1:charge#0");
    assert.throws(() => ctx.idempotencyKey(), /outside a step needs the step key/);
    assert.equal(ctx.idempotencyKey("charge#0"), "uid-1:charge#0");
  });
});

describe("state", () => {
  it("saved state and its note reach the API, and the next attempt starts from it", async () => {
    const ctx = await attempt();
    await ctx.saveState({ done: 1200 }, "processed 1200 of 5000");
    assert.deepEqual(api.seen.at(-1)!.body, { state: { done: 1200 }, note: "processed 1200 of 5000" });
    assert.deepEqual((await attempt(2)).state, { done: 1200 });
    await assert.rejects(ctx.saveState({ n: NaN }), /step 'state' returned a value that cannot be recorded/);
  });
});

describe("values that cannot be recorded fail at their step, by name", () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ["NaN", { score: NaN }, /the value\.score is NaN, which JSON cannot hold/],
    ["a bigint", [1n], /the value\[0\] is a bigint/],
    ["a Map", new Map([["a", 1]]), /is a Map: convert it to an object/],
    ["a function", { f: () => 1 }, /the value\.f is a function/],
    ["binary", new Uint8Array(3), /binary data: encode it/],
  ];
  for (const [what, value, message] of cases) {
    it(`${what}`, async () => {
      const ctx = await attempt();
      await assert.rejects(ctx.step("bad", () => value), (e: unknown) => {
        assert.ok(e instanceof StepResultError);
        assert.match(e.message, /^step 'bad#0' returned a value that cannot be recorded as JSON/);
        assert.match(e.message, message);
        return true;
      });
      assert.equal(api.steps.size, 0);
    });
  }

  it("a cycle", () => {
    const loop: Record<string, unknown> = {};
    loop["self"] = loop;
    assert.throws(() => encode("c#0", loop), /the value\.self refers back to itself/);
  });

  it("a value over 1 MiB of JSON", async () => {
    const ctx = await attempt();
    await assert.rejects(
      ctx.step("big", () => "x".repeat(RESULT_MAX_BYTES)),
      /^StepResultError: step 'big#0' returned 1048578 bytes of JSON, over the cap of 1048576: record a reference/,
    );
  });

  it("undefined is recorded as null, dates as their ISO text", async () => {
    assert.equal(encode("v#0", undefined), null);
    assert.equal(encode("d#0", new Date(0)), "1970-01-01T00:00:00.000Z");
  });
});

describe("the HTTP client", () => {
  it("retries 503 and an unreachable API, and waits as long as a 429's Retry-After says", async () => {
    api.failures = [{ status: 503 }, { status: 429, retryAfter: "0.3" }];
    const started = Date.now();
    const info = await http().getRun();
    assert.equal(info.run.name, "r1");
    assert.equal(api.seen.length, 3);
    assert.ok(Date.now() - started >= 300, "the 429's Retry-After was not waited for");
  });

  it("stops the attempt on 409 (superseded) and 410 (run ended), and refuses on other 4xx", async () => {
    api.failures = [{ status: 409, message: "attempt 2 is current" }];
    await assert.rejects(http().getRun(), (e: unknown) => e instanceof Superseded && /attempt 2 is current/.test(e.message));
    api.failures = [{ status: 410 }];
    await assert.rejects(http().getRun(), RunEnded);
    api.failures = [{ status: 422, message: "key: too long" }];
    await assert.rejects(http().getRun(), (e: unknown) => e instanceof ApiRefused && e.status === 422);
  });

  it("gives up, naming the API, when it stays away past the retry window", async () => {
    const away = new HttpApi({ url: "http://127.0.0.1:9", tokenFile: api.tokenFile, retrySeconds: 0.3 }, quiet);
    await assert.rejects(away.getRun(), (e: unknown) => e instanceof CairnError && /has been unreachable for 0s/.test(e.message));
  });

  it("reads the token file on every call (the kubelet rotates it)", async () => {
    await http().getRun();
    writeFileSync(api.tokenFile, "token-2\n");
    await http().getRun();
    assert.deepEqual(api.seen.map((s) => s.auth), ["Bearer token-1", "Bearer token-2"]);
    writeFileSync(api.tokenFile, "token-1\n");
  });
});

describe("durable waits and child runs", () => {
  it("a short sleep sleeps in its pod and is recorded; a long one ends the pod and then refuses more work", async () => {
    const ctx = await attempt();
    await ctx.sleep("blink", 0.05);
    assert.deepEqual(api.seen.at(-1)!.body, { key: "blink#0", result: null });
    await assert.rejects(ctx.sleep("nap", 60), (e: unknown) => e instanceof WaitSuspended && /sleeping until .* \(step nap#0\)/.test(e.message));
    assert.equal(api.seen.at(-1)!.body.kind, "sleep");
    await assert.rejects(ctx.step("after", () => 1), WaitSuspended);
  });

  it("a token is created once, and its wait returns the data it was completed with", async () => {
    const first = await attempt(1);
    const token = await first.createToken("approval", { timeoutSeconds: 60, tags: ["deploy"] });
    assert.equal(token.id, "tok-1");
    assert.deepEqual(api.seen.at(-1)!.body, { key: "approval#0", tags: ["deploy"], timeoutSeconds: 60 });
    await assert.rejects(first.waitForToken("approved", token), WaitSuspended);

    api.steps.set("approved#0", { ok: true, data: { by: "cli" }, timedOut: false });
    const second = await attempt(2);
    assert.equal((await second.createToken("approval")).id, "tok-1");
    const answer = await second.waitForToken<{ by: string }>("approved", "tok-1");
    assert.deepEqual(answer, { ok: true, data: { by: "cli" }, timedOut: false });
  });

  it("children are asked for in one call with the parent's options, and come back typed, in order", async () => {
    const child = task({ id: "square", run: (p: { n: number }) => ({ sq: p.n * p.n }) });
    const ctx = await attempt();
    api.waitAnswer = (body) => ({
      key: body.key,
      done: true,
      result: body.items.map((it: any, i: number) => ({ run: `r1-${i}`, phase: "Succeeded", ok: true, result: { sq: it.payload.n ** 2 } })),
    });
    const results = await ctx.batchTriggerAndWait("fan", [{ task: child, payload: { n: 2 } }, { task: "square", payload: { n: 3 }, queue: "q" }]);
    assert.deepEqual(results.map((r) => r.result?.sq), [4, 9]);
    assert.deepEqual(api.seen.at(-1)!.body, {
      key: "fan#0",
      wait: true,
      parentClosePolicy: "Cancel",
      items: [
        { task: "square", payload: { n: 2 }, priority: 0 },
        { task: "square", payload: { n: 3 }, priority: 0, queue: "q" },
      ],
    });
    const failed = (api.waitAnswer = (body) => ({ key: body.key, done: true, result: [{ run: "r1-x", phase: "Failed", ok: false, result: null }] }));
    void failed;
    const one = await ctx.triggerAndWait("one", child, { n: 4 });
    assert.deepEqual(one, { run: "r1-x", phase: "Failed", ok: false, result: null });
  });

  it("trigger starts a child once and gives its name; a later attempt gets the same name", async () => {
    api.waitAnswer = (body) => ({ key: body.key, done: true, result: { runs: ["r1-kick-0-0"] } });
    const first = await attempt(1);
    assert.equal(await first.trigger("kick", "square", { n: 1 }, { parentClosePolicy: "Abandon" }), "r1-kick-0-0");
    assert.equal(api.seen.at(-1)!.body.wait, false);
    assert.equal(api.seen.at(-1)!.body.parentClosePolicy, "Abandon");
    const calls = api.seen.length;
    assert.equal(await (await attempt(2)).trigger("kick", "square", { n: 1 }), "r1-kick-0-0");
    assert.equal(api.seen.length, calls + 1); // GET /v1/run only: no second child
  });

  it("a child payload that is not JSON fails at the step that starts it", async () => {
    const ctx = await attempt();
    await assert.rejects(ctx.trigger("kick", "square", { n: NaN }), /step 'kick#0' returned a value that cannot be recorded/);
  });
});

describe("task()", () => {
  it("refuses an id that cannot be a Task's name", () => {
    assert.throws(() => task({ id: "Process_Video", run: () => 1 }), /must be a Kubernetes name/);
  });
});
