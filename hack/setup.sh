#!/usr/bin/env bash
# Install everything the tests need, idempotently: Debian packages, the Kubernetes binaries (built
# from the Go module proxy, cached per version), KWOK and Helm, the Python virtual environment, and the TypeScript SDK (npm packages, tsc).
# Called by `make test`, `make dev-cluster`, `make demo` and `make bench`; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="etcd-server etcd-client containerd runc containernetworking-plugins iptables conntrack
debootstrap busybox-static postgresql-15 postgresql-client-15 util-linux iproute2 openssl gcc libc6-dev
lua5.1 lua5.4 chromium"

# One setup at a time on the machine (two checkouts, or a dev cluster and a test run, may start
# together): apt, the builds into the shared cache and the .venv are not safe to run twice at once.
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
mkdir -p "$CACHE"
exec 9>"$CACHE/.setup.lock"
flock -n 9 || { echo "[setup] waiting for another setup on this machine to finish"; flock 9; }

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

missing=()
for p in $APT_PACKAGES; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: installing ${missing[*]} needs root" >&2; exit 1; }
  log "apt-get install ${missing[*]}"
  # 9>&-: a daemon a package starts must not inherit (and hold forever) the setup lock.
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 9>&-
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null 9>&-
fi
# Node.js and npm, for the TypeScript SDK and its tasks: Debian's packages if no node is installed yet
# (a node from elsewhere, e.g. NodeSource's, is used as it is: its package provides npm itself).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "setup: installing nodejs and npm needs root" >&2; exit 1; }
  log "apt-get install nodejs npm"
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 9>&-
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends nodejs npm >/dev/null 9>&-
fi
# Debian's packages start no daemons here (no systemd), but make sure a stray one does not hold the
# default sockets the harness avoids anyway.

bash hack/build-k8s.sh
bash hack/build-tools.sh

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import cairn, kopf, lightkube, psycopg, pytest' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  log "python virtual environment (.venv)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[dev]"
  touch .venv/.installed
fi
bash hack/build-typescript.sh
log "ready"
