#!/usr/bin/env bash
# Builds Argo CD (application controller, repo server, server: one binary, argv[0] picks the component) and
# hack/argocd-lua (argo-cd's own util/lua health evaluation) from Go modules, through a wrapper module that
# copies argo-cd's `replace` block (`go install .../argo-cd/v2/cmd@v` refuses a module with replaces).
# Cached outside the repository, keyed by the Argo CD version (and argocd-lua by the hash of its source):
# a second run is a no-op. Prints the cache folder. ONLY=lua builds just argocd-lua (3 of the 4.5 cold minutes).
set -euo pipefail

ARGOCD_VERSION="${ARGOCD_VERSION:-2.14.21}"
CACHE_ROOT="${QUANTZOO_CACHE:-$HOME/.cache/quantzoo}"
BIN="$CACHE_ROOT/bin/argocd-v${ARGOCD_VERSION}"
HERE="$(cd "$(dirname "$0")" && pwd)"
LUA_SRC="$HERE/argocd-lua/main.go"
LUA_BIN="argocd-lua-$(sha1sum "$LUA_SRC" | cut -c1-12)"
ONLY="${ONLY:-all}"

log() { printf '[build-argocd] %s\n' "$*" >&2; }
ready() { [[ -x "$BIN/$LUA_BIN" ]] && { [[ "$ONLY" == lua ]] || [[ -x "$BIN/argocd" && -d "$BIN/crds" ]]; }; }

if ready; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN" "$CACHE_ROOT/locks"
exec 9>"$CACHE_ROOT/locks/build-argocd.lock"
flock 9   # two concurrent callers must not build into the same folder
if ready; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { log "Go toolchain not found; install Go >= 1.24"; exit 1; }
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init quantzoo.local/argocd-build >/dev/null 2>&1
read -r gomod moddir < <(go mod download -json "github.com/argoproj/argo-cd/v2@v${ARGOCD_VERSION}" |
  python3 -c 'import json,sys; m = json.load(sys.stdin); print(m["GoMod"], m["Dir"])')
# argo-cd's own replace block, verbatim (k8s.io staging modules, telegram-bot-api, protobuf, grpc-gateway, yaml).
mapfile -t args < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
    new = r["New"]["Path"] + ("@" + r["New"]["Version"] if r["New"].get("Version") else "")
    print(f"-replace={old}={new}")')
go mod edit "-require=github.com/argoproj/argo-cd/v2@v${ARGOCD_VERSION}" "${args[@]}"
mkdir -p argocd-lua && cp "$LUA_SRC" argocd-lua/main.go
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/argoproj/argo-cd/v2/cmd"
GO
go mod tidy >/dev/null 2>&1 || go mod tidy

if [[ ! -x "$BIN/$LUA_BIN" ]]; then
  log "go build argocd-lua (argo-cd v${ARGOCD_VERSION} util/lua)"
  go build -trimpath -ldflags "-s -w" -o "$BIN/$LUA_BIN.tmp" ./argocd-lua
  mv "$BIN/$LUA_BIN.tmp" "$BIN/$LUA_BIN"
fi
ln -sfn "$LUA_BIN" "$BIN/argocd-lua"

if [[ "$ONLY" != lua && ! -x "$BIN/argocd" ]]; then
  log "go build argocd v${ARGOCD_VERSION} (about 5 minutes the first time on 2 cores)"
  pkg=github.com/argoproj/argo-cd/v2/common
  go build -trimpath -ldflags "-s -w -X $pkg.version=${ARGOCD_VERSION} -X $pkg.gitTreeState=clean" \
    -o "$BIN/argocd.tmp" github.com/argoproj/argo-cd/v2/cmd
  mv "$BIN/argocd.tmp" "$BIN/argocd"
fi
if [[ "$ONLY" != lua && ! -d "$BIN/crds" ]]; then
  # Argo CD's CRDs (Application, AppProject, ApplicationSet) from the same module version.
  mkdir -p "$BIN/crds.tmp" && cp "$moddir"/manifests/crds/*-crd.yaml "$BIN/crds.tmp/" && mv "$BIN/crds.tmp" "$BIN/crds"
fi
for c in argocd-application-controller argocd-repo-server argocd-server; do
  [[ -x "$BIN/argocd" ]] && ln -sfn argocd "$BIN/$c"
done
log "done: $(ls "$BIN" | tr '\n' ' ')"
echo "$BIN"
