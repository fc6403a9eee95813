// The seed's process-video task in TypeScript: download -> transcode -> thumbnail, each a recorded
// step. Kill its pod after the second step and the next attempt (a new pod) starts at the thumbnail:
// the download and the transcode are replayed from their records, not done again.
//
// The "video" is raw 8-bit greyscale frames (payload: width x height x frames bytes), fetched from
// MEDIA_SOURCE_URL/<source>, or a test pattern when that is not set; "transcoding" halves its
// resolution; the thumbnail is the first frame as a PGM image. Frames travel between steps in their
// results (base64), which suits clips this small; a real pipeline records a reference to object
// storage instead, since a step's result is capped at 1 MiB of JSON.
//
// progressUrl (optional): a webhook told of every step this attempt executes
// (GET ?run=NAME&what=STEP&attempt=N), as an application's progress bar would be.
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import { AbortTaskRunError, task, type Context } from "@cairn-dev/sdk";

export interface Payload {
  source: string;
  width: number;
  height: number;
  frames: number;
  progressUrl?: string;
  /** Pretend each step takes this long (demos and tests that interrupt a run). */
  stepSeconds?: number;
}

export interface Clip {
  width: number;
  height: number;
  frames: number;
  sha256: string;
  base64: string;
}

export interface Thumbnail {
  width: number;
  height: number;
  sha256: string;
  pgm: string;
}

const MAX_CLIP_BYTES = 256 * 1024;

function parse(raw: unknown): Payload {
  const p = (raw ?? {}) as Partial<Payload>;
  if (typeof p.source !== "string" || !p.source) throw new TypeError("'source' must be a non-empty string");
  for (const field of ["width", "height", "frames"] as const) {
    const v = p[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 2) throw new TypeError(`'${field}' must be a whole number >= 2`);
  }
  if (p.width! % 2 || p.height! % 2) throw new TypeError("unsupported format: width and height must be even");
  if (p.width! * p.height! * p.frames! > MAX_CLIP_BYTES) {
    throw new TypeError(`a clip over ${MAX_CLIP_BYTES} bytes does not fit in a step's result: record a reference instead`);
  }
  return p as Payload;
}

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

async function progress(ctx: Context, p: Payload, step: string): Promise<void> {
  if (p.progressUrl) {
    const q = new URLSearchParams({ run: ctx.runName, what: step, attempt: String(ctx.attempt) });
    const answer = await fetch(`${p.progressUrl}?${q}`, { signal: AbortSignal.timeout(10_000) });
    if (!answer.ok) throw new Error(`progress webhook answered ${answer.status}`);
  }
  await sleep((p.stepSeconds ?? 0) * 1000);
}

async function download(ctx: Context, p: Payload): Promise<Clip> {
  await progress(ctx, p, "download");
  const size = p.width * p.height * p.frames;
  const base = process.env["MEDIA_SOURCE_URL"];
  let data: Buffer;
  if (base) {
    const answer = await fetch(`${base.replace(/\/+$/, "")}/${encodeURIComponent(p.source)}`, { signal: AbortSignal.timeout(60_000) });
    if (!answer.ok) throw new Error(`GET ${p.source}: HTTP ${answer.status}`); // retried: the source may be back
    data = Buffer.from(await answer.arrayBuffer());
  } else {
    data = Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + Math.floor(i / 64)) % 256));
  }
  if (data.length !== size) {
    // No retry can fix a file of the wrong size: fail the run now (exit 2 -> FailRun in task.yaml).
    throw new AbortTaskRunError(`${p.source} has ${data.length} bytes; ${size} were expected for its declared size`);
  }
  return { width: p.width, height: p.height, frames: p.frames, sha256: sha(data), base64: data.toString("base64") };
}

async function transcode(ctx: Context, p: Payload, clip: Clip): Promise<Clip> {
  await progress(ctx, p, "transcode");
  const data = Buffer.from(clip.base64, "base64");
  if (sha(data) !== clip.sha256) throw new Error("the downloaded clip does not match its checksum");
  const { width, height } = clip;
  const out: number[] = [];
  for (let f = 0; f < clip.frames; f++) {
    for (let y = 0; y < height; y += 2) {
      for (let x = 0; x < width; x += 2) out.push(data[f * width * height + y * width + x]!);
    }
  }
  const half = Buffer.from(out);
  return { width: width / 2, height: height / 2, frames: clip.frames, sha256: sha(half), base64: half.toString("base64") };
}

async function thumbnail(ctx: Context, p: Payload, clip: Clip): Promise<Thumbnail> {
  await progress(ctx, p, "thumbnail");
  const first = Buffer.from(clip.base64, "base64").subarray(0, clip.width * clip.height);
  const pgm = Buffer.concat([Buffer.from(`P5 ${clip.width} ${clip.height} 255\n`), first]);
  return { width: clip.width, height: clip.height, sha256: sha(pgm), pgm: pgm.toString("base64") };
}

export default task({
  id: "process-video",
  payload: parse,
  run: async (payload, ctx) => {
    const clip = await ctx.step("download", () => download(ctx, payload), { retry: { maxAttempts: 3 } });
    const half = await ctx.step("transcode", () => transcode(ctx, payload, clip));
    const thumb = await ctx.step("thumbnail", () => thumbnail(ctx, payload, half));
    return { size: `${thumb.width}x${thumb.height}`, thumbnailSha256: thumb.sha256, frames: half.frames };
  },
});
