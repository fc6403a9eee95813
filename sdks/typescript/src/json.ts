/** What a step may return: JSON, checked before it is sent, so that a value JSON.stringify would
 * quietly change (NaN to null, a Map to {}, a function dropped) fails at its step, by name. */

import { StepResultError } from "./errors.js";

export const RESULT_MAX_BYTES = 1024 * 1024;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function problem(value: unknown, path: string, seen: Set<object>): string | null {
  if (value === null || typeof value === "boolean" || typeof value === "string") return null;
  if (typeof value === "number") {
    return Number.isFinite(value) ? null : `${path} is ${value}, which JSON cannot hold`;
  }
  if (typeof value === "bigint") return `${path} is a bigint (${value}n): return it as a string or a number`;
  if (typeof value === "function" || typeof value === "symbol") return `${path} is a ${typeof value}`;
  if (value === undefined) return null; // dropped from objects, null in arrays, as JSON.stringify does
  if (typeof value !== "object") return `${path} is a ${typeof value}`;
  if (seen.has(value)) return `${path} refers back to itself (a cycle)`;
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return null; // Date, URL, ...
  if (value instanceof Map || value instanceof Set) {
    return `${path} is a ${value.constructor.name}: convert it to an object or an array`;
  }
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return `${path} is binary data: encode it (base64) or record a reference to it`;
  }
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const p = problem(value[i], `${path}[${i}]`, seen);
        if (p) return p;
      }
      return null;
    }
    for (const [k, v] of Object.entries(value)) {
      const p = problem(v, `${path}.${k}`, seen);
      if (p) return p;
    }
    return null;
  } finally {
    seen.delete(value);
  }
}

/** `value` as the JSON it is recorded as, or a StepResultError naming `key`. A step that returns
 * nothing (undefined) records null. */
export function encode(key: string, value: unknown): Json {
  const found = problem(value, "the value", new Set());
  if (found) {
    throw new StepResultError(
      `step '${key}' returned a value that cannot be recorded as JSON: ${found} (return JSON types)`,
    );
  }
  const text = JSON.stringify(value === undefined ? null : value);
  const bytes = Buffer.byteLength(text);
  if (bytes > RESULT_MAX_BYTES) {
    throw new StepResultError(
      `step '${key}' returned ${bytes} bytes of JSON, over the cap of ${RESULT_MAX_BYTES}: ` +
        "record a reference (a path, a URL) instead",
    );
  }
  return JSON.parse(text) as Json;
}
