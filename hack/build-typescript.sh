#!/usr/bin/env bash
# Build the TypeScript SDK (sdks/typescript -> dist/) and the TypeScript tasks: the example
# (examples/typescript) and the end-to-end tests' tasks (tests/e2e/typescript), into
# sdks/typescript/build/tasks. Installs the SDK's build-time packages (TypeScript, openapi-typescript,
# Node's types: the SDK itself has no runtime dependencies) from the npm registry once, cached.
# Called by hack/setup.sh and by the harness before it builds the image localhost/cairn-node.
set -euo pipefail
cd "$(dirname "$0")/../sdks/typescript"
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "build-typescript: node and npm are needed (hack/setup.sh installs Debian's nodejs and npm)" >&2
  exit 1
}
export npm_config_cache="${CAIRN_CACHE:-$HOME/.cache/cairn}/npm"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[typescript] npm ci (TypeScript, openapi-typescript, @types/node)"
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
npm run --silent build:tasks
# The tasks are ES modules: each directory's package.json says so to Node.
cp ../../examples/typescript/package.json build/tasks/examples/typescript/
cp ../../tests/e2e/typescript/package.json build/tasks/tests/e2e/typescript/
# So that the compiled tasks also run on this machine (`node dist/run.js build/tasks/...`), as they do
# in the image, where the SDK is at /node_modules/@cairn-dev/sdk.
mkdir -p build/tasks/node_modules/@cairn-dev
ln -sfn ../../../.. build/tasks/node_modules/@cairn-dev/sdk
