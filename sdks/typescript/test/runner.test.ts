import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, beforeEach, describe, it } from "node:test";

import { FakeApi } from "./fake-api.js";

const api = new FakeApi();
before(async () => void (await api.start()));
after(async () => api.stop());
beforeEach(() => {
  api.steps.clear();
  api.result = undefined;
  api.payload = null;
});

function run(target: string, env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["build/src/run.js", target, ...args], {
      env: { PATH: process.env["PATH"], ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("close", (code) => resolve({ code: code ?? -1, out }));
  });
}

const TASKS = "build/test/fixtures/tasks.js";

describe("cairn-run", () => {
  it("runs the task, records its steps and result, and exits 0; a second attempt replays them", async () => {
    api.payload = { numbers: [2, 3] };
    const first = await run(`${TASKS}:sum`, api.env());
    assert.equal(first.code, 0, first.out);
    assert.deepEqual(api.result, { total: 5 });
    assert.match(first.out, /attempt 1: 0 steps already recorded/);
    assert.match(first.out, /steps executed in this attempt: add#0, add#1/);
    const again = await run(`${TASKS}:sum`, api.env());
    assert.match(again.out, /2 steps already recorded/);
    assert.match(again.out, /steps executed in this attempt: none/);
  });

  it("exits 2 for AbortTaskRunError and for a payload its task refuses; 1 for any other error", async () => {
    const aborted = await run(`${TASKS}:aborts`, api.env());
    assert.equal(aborted.code, 2);
    assert.match(aborted.out, /cairn: fatal: format 'avi' is not supported/);
    api.payload = { numbers: "many" };
    const refused = await run(`${TASKS}:sum`, api.env());
    assert.equal(refused.code, 2);
    assert.match(refused.out, /the payload is unusable: the payload needs a list 'numbers'/);
    const thrown = await run(`${TASKS}:throws`, api.env());
    assert.equal(thrown.code, 1);
    assert.match(thrown.out.trim().split("\n").at(-1)!, /^RangeError: out of range$/);
  });

  it("exits 0 with no result when a wait ends the pod, even if the task caught the wait's error", async () => {
    const r = await run(`${TASKS}:swallowsItsWait`, api.env());
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /sleeping until .*\(step nap#0\): this pod ends/);
    assert.equal(api.result, undefined);
  });

  it("exits 3 naming the result that cannot be recorded", async () => {
    const r = await run(`${TASKS}:unrecordable`, api.env());
    assert.equal(r.code, 3);
    assert.match(r.out, /step 'result' returned a value that cannot be recorded as JSON: the value\.when is a bigint/);
  });

  it("runs locally without Cairn, with --payload, and says what is wrong with its arguments", async () => {
    const local = await run(`${TASKS}:sum`, {}, "--payload", '{"numbers": [4, 5]}');
    assert.equal(local.code, 0, local.out);
    assert.match(local.out, /"total": 9/);
    const bad = await run(`${TASKS}:sum`, {}, "--payload", "{nope");
    assert.equal(bad.code, 2);
    assert.match(bad.out, /--payload is not JSON/);
    const missing = await run(`${TASKS}:nothing`, {});
    assert.equal(missing.code, 2);
    assert.match(missing.out, /exports no task named 'nothing'/);
    const many = await run(TASKS, {});
    assert.match(many.out, /must export one task \(default, or name it: .*:NAME\); found aborts, sum, swallowsItsWait/);
  });
});
