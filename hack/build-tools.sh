#!/usr/bin/env bash
# KWOK (simulated nodes), Helm, CoreDNS and Kueue: built with `go install` from the Go module proxy,
# cached per version.
set -euo pipefail
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
export GOMODCACHE=${GOMODCACHE:-$CACHE/go/mod}
export GOCACHE=${GOCACHE:-$CACHE/go/build}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
HELM_VERSION=${HELM_VERSION:-v3.17.4}

build() { # name version package [ldflags]
  local dir="$CACHE/tools/$1-$2"
  [ -x "$dir/$1" ] && return 0
  echo "building $1 $2"
  local start; start=$(date +%s)
  local tmp="$dir.tmp.$$"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w ${4:-}" "$3@$2" 2>&1 | grep -v '^go: downloading' || true
  [ -x "$tmp/$1" ] || { echo "build of $1 $2 failed" >&2; exit 1; }
  rm -rf "$dir"; mv "$tmp" "$dir"
  echo "built $1 $2 in $(( $(date +%s) - start ))s"
}
build kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
build helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
build coredns "${COREDNS_VERSION:-v1.12.4}" github.com/coredns/coredns
# Kueue's controller (shared quotas and preemption; tests/e2e/test_kueue.py), with its CRDs in the module.
build kueue "${KUEUE_VERSION:-v0.17.0}" sigs.k8s.io/kueue/cmd/kueue
