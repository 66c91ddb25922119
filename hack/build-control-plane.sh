#!/usr/bin/env bash
# Builds the control-plane binaries the test suite and the demo run against: kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl (from k8s.io/kubernetes through a wrapper module,
# because `go install k8s.io/kubernetes/...@v` refuses its staging replaces), etcd, kwok and helm.
# Cached outside the repository, keyed by version: a second run is a no-op.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-0.7.0}"
HELM_VERSION="${HELM_VERSION:-3.19.5}"
CACHE_ROOT="${QUANTZOO_CACHE:-$HOME/.cache/quantzoo}"
BIN="$CACHE_ROOT/bin/k8s-v${K8S_VERSION}_etcd-v${ETCD_VERSION}_kwok-v${KWOK_VERSION}_helm-v${HELM_VERSION}"

log() { printf '[build-control-plane] %s\n' "$*" >&2; }

want=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd kwok helm)
missing=()
for b in "${want[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN" "$CACHE_ROOT/locks"
exec 9>"$CACHE_ROOT/locks/build.lock"
flock 9   # two concurrent callers must not build into the same folder
missing=()
for b in "${want[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { log "Go toolchain not found; install Go >= 1.24"; exit 1; }
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "building into $BIN (missing: ${missing[*]}); this takes several minutes the first time"

need() { [[ " ${missing[*]} " == *" $1 "* ]]; }

if need kube-apiserver || need kube-controller-manager || need kube-scheduler || need kubectl || need kubelet || need kube-proxy; then
  minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  staging_version="v0.${K8S_VERSION#*.}"
  mkdir -p "$work/k8s" && cd "$work/k8s"
  go mod init quantzoo.local/k8s-build >/dev/null 2>&1
  gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  # Every k8s.io staging module that kubernetes requires at v0.0.0 is replaced by its published twin.
  mapfile -t staging < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
for r in mod.get("Require") or []:
    if r["Path"].startswith("k8s.io/") and r["Version"] == "v0.0.0":
        print(r["Path"])')
  args=("-require=k8s.io/kubernetes@v${K8S_VERSION}")
  for m in "${staging[@]}"; do
    if go list -m "$m@$staging_version" >/dev/null 2>&1; then
      args+=("-replace=$m=$m@$staging_version")
    else
      log "staging module $m has no published $staging_version; skipped"
    fi
  done
  go mod edit "${args[@]}"
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  go mod tidy >/dev/null
  ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor} -X $pkg.gitTreeState=clean"
  done
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    need "$b" || continue
    log "go build $b v${K8S_VERSION}"
    go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$BIN/$b.tmp" "$BIN/$b"
  done
fi

if need etcd; then
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init quantzoo.local/etcd-build >/dev/null 2>&1
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null
  go mod tidy >/dev/null
  log "go build etcd v${ETCD_VERSION}"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" .
  mv "$BIN/etcd.tmp" "$BIN/etcd"
fi

if need kwok; then
  log "go install kwok v${KWOK_VERSION}"
  GOBIN="$work/gobin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v${KWOK_VERSION}"
  mv "$work/gobin/kwok" "$BIN/kwok"
fi

if need helm; then
  log "go install helm v${HELM_VERSION}"
  GOBIN="$work/gobin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v${HELM_VERSION}" \
    "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}"
  mv "$work/gobin/helm" "$BIN/helm"
fi

log "done: $(ls "$BIN" | tr '\n' ' ')"
echo "$BIN"
