#!/usr/bin/env bash
# Builds the Go pieces of the real single node that are not part of Kubernetes itself: CoreDNS (cluster DNS,
# run as a pod), kube-router's network-policy controller (the NetworkPolicy enforcer, run as a process) and a
# pause binary for the pod sandbox image (registry.k8s.io/pause is out of reach; ours does what its pause.c
# does: sleep until SIGINT/SIGTERM, reap orphans).
# kubelet and kube-proxy come from hack/build-control-plane.sh (same Kubernetes version and wrapper module).
#
# Why kube-router and not sigs.k8s.io/kube-network-policies: kube-network-policies (v0.8.0) hands packets to
# user space with nftables' `queue` expression, which needs CONFIG_NFT_QUEUE; kernels built without it (this
# VM's: `nft add rule inet t c queue num 100` fails with "No such file or directory") cannot run it.
# kube-router enforces NetworkPolicy with iptables + ipset, which every stock kernel has.
#
# Cached outside the repository, keyed by version: a second run is a no-op. Prints the folder.
set -euo pipefail

COREDNS_VERSION="${COREDNS_VERSION:-1.15.0}"
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-2.1.0}"
CACHE_ROOT="${QUANTZOO_CACHE:-$HOME/.cache/quantzoo}"
BIN="$CACHE_ROOT/bin/node_coredns-v${COREDNS_VERSION}_kube-router-v${KUBE_ROUTER_VERSION}"

log() { printf '[build-node] %s\n' "$*" >&2; }

want=(coredns kube-router pause)
have_all() { for b in "${want[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done; }
if have_all; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN" "$CACHE_ROOT/locks"
exec 9>"$CACHE_ROOT/locks/build.lock"
flock 9   # two concurrent callers must not build into the same folder
if have_all; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { log "Go toolchain not found; install Go >= 1.24"; exit 1; }
export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0   # static: CoreDNS runs in a FROM-scratch image
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ ! -x "$BIN/coredns" ]]; then
  log "go install coredns v${COREDNS_VERSION}"
  start=$SECONDS
  GOBIN="$work/gobin" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@v${COREDNS_VERSION}"
  mv "$work/gobin/coredns" "$BIN/coredns"
  log "coredns built in $((SECONDS - start)) s"
fi

if [[ ! -x "$BIN/kube-router" ]]; then
  log "go install kube-router v${KUBE_ROUTER_VERSION}"
  start=$SECONDS
  GOBIN="$work/gobin" go install -trimpath -ldflags "-s -w" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v${KUBE_ROUTER_VERSION}"
  mv "$work/gobin/kube-router" "$BIN/kube-router"
  log "kube-router built in $((SECONDS - start)) s"
fi

if [[ ! -x "$BIN/pause" ]]; then
  log "go build pause"
  mkdir -p "$work/pause" && cd "$work/pause"
  go mod init quantzoo.local/pause >/dev/null 2>&1
  cat > main.go <<'GO'
// pause: the process that holds a pod's namespaces open (PID 1 of the sandbox).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  go build -trimpath -ldflags "-s -w" -o "$BIN/pause" .
  cd - >/dev/null
fi

log "done: $(ls "$BIN" | tr '\n' ' ')"
echo "$BIN"
