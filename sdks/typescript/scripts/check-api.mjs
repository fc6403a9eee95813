// Fails when src/generated/openapi.ts is not what openapi-typescript makes of the API's description
// (operator/cairn/server/openapi.yaml): the SDK's types and the API cannot drift. Fix: `npm run gen`,
// then `npm run build` shows every place the SDK must follow the change.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "cairn-api-"));
try {
  const fresh = join(dir, "openapi.ts");
  execFileSync(
    process.execPath,
    ["node_modules/openapi-typescript/bin/cli.js", "../../operator/cairn/server/openapi.yaml", "-o", fresh],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const committed = readFileSync("src/generated/openapi.ts", "utf8");
  if (readFileSync(fresh, "utf8") !== committed) {
    console.error(
      "src/generated/openapi.ts is out of date with operator/cairn/server/openapi.yaml: run `npm run gen` in sdks/typescript",
    );
    process.exit(1);
  }
  console.log("openapi types: up to date with operator/cairn/server/openapi.yaml");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
