#!/usr/bin/env bash
# Build the Kubernetes binaries the test harness runs, from the published k8s.io/kubernetes
# Go module (through the Go module proxy), into a cache directory keyed by version.
# Nothing from Kubernetes is vendored or committed: this is an ordinary `go build`.
#
# Usage: hack/build-k8s.sh            (K8S_VERSION and CAIRN_CACHE may be set)
set -euo pipefail

K=${K8S_VERSION:-v1.33.13}
MINOR=$(cut -d. -f2 <<<"$K")
STG="v0.${K#v1.}"
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
OUT="$CACHE/k8s/$K"
CMDS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"

have_all() { for c in $CMDS; do [ -x "$OUT/$c" ] || return 1; done; }
if have_all; then
  echo "k8s $K: cached in $OUT"
  exit 0
fi

export GOMODCACHE=${GOMODCACHE:-$CACHE/go/mod}
export GOCACHE=${GOCACHE:-$CACHE/go/build}
export GOFLAGS=-mod=mod
start=$(date +%s)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
go mod init k8sbuild >/dev/null 2>&1
echo "k8s $K: resolving modules"
GOMOD=$(go mod download -json "k8s.io/kubernetes@$K" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
# The kubernetes go.mod replaces its 31 staging modules with ./staging paths; point each at its
# published version instead (read from go.mod rather than hard-coded).
# The sample-* staging modules are not published on every proxy; no binary imports them, so
# an empty local module stands in for any staging module that cannot be downloaded.
for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$GOMOD"); do
  if go mod download "$m@$STG" 2>/dev/null; then
    go mod edit -replace="$m=$m@$STG"
  else
    case "$m" in
      k8s.io/sample-*)
        stub="$W/stub/${m#k8s.io/}"
        mkdir -p "$stub" && printf 'module %s\n\ngo 1.24\n' "$m" >"$stub/go.mod"
        go mod edit -replace="$m=$stub" ;;
      *) echo "k8s $K: $m@$STG is not on the module proxy" >&2; exit 1 ;;
    esac
  fi
done
go mod edit -godebug=default=go1.24
go get $(for c in $CMDS; do echo "k8s.io/kubernetes/cmd/$c@$K"; done) >/dev/null
LD="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LD+=" -X $p.gitVersion=$K -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
  LD+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=1970-01-01T00:00:00Z"
done
echo "k8s $K: building $CMDS"
tmp="$OUT.tmp.$$"
mkdir -p "$tmp"
CGO_ENABLED=0 go build -trimpath -ldflags "$LD" -o "$tmp/" \
  $(for c in $CMDS; do echo "k8s.io/kubernetes/cmd/$c"; done)
rm -rf "$OUT"
mv "$tmp" "$OUT"
echo "k8s $K: built in $(( $(date +%s) - start ))s into $OUT"
