#!/usr/bin/env bash
# Builds the images the real single node runs, without a registry (none is reachable here):
#   1. a Python base image: mmdebstrap makes a bookworm rootfs with python3.11, buildah commits it;
#   2. the QuantZoo image: our Dockerfile, unchanged, with --build-arg PYTHON_IMAGE=<that base>;
#   3. pause and CoreDNS images: FROM scratch plus the static binaries from hack/build-node.sh.
# Each is written as an OCI archive under ~/.cache/quantzoo/images/, named by a hash of its inputs, so a
# second run is a no-op; hack/devcluster/node.py imports the archives into containerd's k8s.io namespace.
#
# The machine's pip configuration and CA bundle are MOUNTED into the build (never copied into a layer):
# the package index is reached only through this machine's own configuration.
#
# Usage: build-image.sh [quantzoo|node|all|strategy-template]   (default all; node = pause + CoreDNS, needs
# Go builds; strategy-template = the tutorial's image FROM ours, built only when a test asks for it)
# Prints one line per image: `<name> <image reference> <archive path>`.
set -euo pipefail
WHAT="${1:-all}"

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_ROOT="${QUANTZOO_CACHE:-$HOME/.cache/quantzoo}"
OUT="$CACHE_ROOT/images"
STORE="$CACHE_ROOT/buildah"   # buildah's own storage: nothing in the system-wide container store
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
BASE_PACKAGES="python3.11,python3.11-venv,python3-pip,ca-certificates"

log() { printf '[build-image] %s\n' "$*" >&2; }
bah() { buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs "$@"; }

for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || { log "$tool not found: run \`make node-deps\`"; exit 1; }
done
mkdir -p "$OUT" "$STORE" "$CACHE_ROOT/locks"
exec 9>"$CACHE_ROOT/locks/image.lock"
flock 9

# pip's configuration and CA bundle on this machine (mounted read-only into RUN steps, if present).
volumes=()
pip_conf="${PIP_CONFIG_FILE:-/etc/pip.conf}"
[[ -f "$pip_conf" ]] && volumes+=(--volume "$pip_conf:/etc/pip.conf:ro")
ca="${SSL_CERT_FILE:-}"
if [[ -z "$ca" && -f "$pip_conf" ]]; then
  ca="$(sed -n 's/^[[:space:]]*cert[[:space:]]*=[[:space:]]*//p' "$pip_conf" | head -n1)"
fi
[[ -n "$ca" && -f "$ca" ]] && volumes+=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")

# Builds <context>/Dockerfile as localhost/quantzoo/<stem>:dev-<key> with one build argument, unless its archive
# $OUT/<stem>-<key>.<oci|docker>.tar exists, and saves it there under <saved name>. The three most recently used
# builds of a stem are kept (worktrees of other commits would otherwise rebuild each other's in turn); each
# older one would add up to ~600 MB to the cache.
dockerfile_image() {  # stem key transport saved-name context build-arg
  local stem="$1" key="$2" transport="$3" saved="$4" context="$5" arg="$6"
  local ext="${3%-archive}.tar" ref="localhost/quantzoo/$stem:dev-$key" start=$SECONDS kept
  local tar="$OUT/$stem-$key.$ext"
  if [[ -s "$tar" ]]; then
    touch "$tar"  # recently used: pruned last
    return
  fi
  log "$stem image $ref: buildah bud ${context/#"$REPO"/.} ($arg)"
  if ! bah inspect --type image "$ref" >/dev/null 2>&1; then
    bah bud --quiet --isolation chroot --layers=false "${volumes[@]}" \
      --build-arg "$arg" -t "$ref" -f "$context/Dockerfile" "$context" >/dev/null
  fi
  bah push --quiet "$ref" "$transport:$tar.tmp:$saved"
  mv "$tar.tmp" "$tar"
  log "$stem image built in $((SECONDS - start)) s"
  # shellcheck disable=SC2012  # our own file names: no newlines
  ls -t "$OUT/$stem"-*."$ext" | tail -n +4 | xargs -r rm -f
  # shellcheck disable=SC2012
  kept="$(ls "$OUT/$stem"-*."$ext" | sed "s|.*/$stem-\(.*\)\.$ext\$|:dev-\1|")"
  bah images --format '{{.Name}}:{{.Tag}}' | grep "quantzoo/$stem:dev-" | grep -v -F "$kept" \
    | xargs -r -n1 buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs rmi >/dev/null 2>&1 || true
}

build_quantzoo() {
# -- 1. base image --------------------------------------------------------------------------------
base_key="$(printf '%s\n' "$DEBIAN_SUITE" "$BASE_PACKAGES" "v1" | sha256sum | cut -c1-12)"
BASE_REF="localhost/quantzoo-python:3.11-${DEBIAN_SUITE}-${base_key}"
if ! bah inspect --type image "$BASE_REF" >/dev/null 2>&1; then
  log "base image $BASE_REF: mmdebstrap $DEBIAN_SUITE + python3.11"
  start=$SECONDS
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # No mirror argument: mmdebstrap uses this machine's apt sources, and the sources list is removed from
  # the result (the image never runs apt, and this machine's mirror is not the image's business).
  mmdebstrap --quiet --variant=apt --include="$BASE_PACKAGES" \
    --customize-hook='rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*' \
    --customize-hook='rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf python3.11 "$1"/usr/bin/python' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$DEBIAN_SUITE" "$tmp/rootfs.tar"
  ctr="$(bah from scratch)"
  mnt="$(bah mount "$ctr")"
  tar -C "$mnt" -xf "$tmp/rootfs.tar"
  bah umount "$ctr" >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$ctr"
  bah commit --quiet "$ctr" "$BASE_REF" >/dev/null
  bah rm "$ctr" >/dev/null
  log "base image built in $((SECONDS - start)) s"
fi

# -- 2. the QuantZoo image ------------------------------------------------------------------------
# Inputs: what the Dockerfile COPYs, the Dockerfile itself and the base image.
# Our images are named under localhost/, so containerd and the kubelet know them by the name we give them
# (an unqualified name would be expanded to a registry's).
APP_NAME="localhost/quantzoo/quantzoo"
app_key="$(
  cd "$REPO"
  {
    echo "$APP_NAME $BASE_REF"
    sha256sum Dockerfile pyproject.toml README.md
    git ls-files -z api operator engine safety crds | xargs -0 sha256sum
  } | sha256sum | cut -c1-12
)"
APP_REF="$APP_NAME:dev-${app_key}"
APP_TAR="$OUT/quantzoo-${app_key}.oci.tar"
dockerfile_image quantzoo "$app_key" oci-archive "$APP_REF" "$REPO" "PYTHON_IMAGE=$BASE_REF"
echo "quantzoo $APP_REF $APP_TAR"
}

# -- 2b. the strategy tutorial's image (docs/STRATEGIES.md): examples/strategy-template/Dockerfile FROM ours --
# Saved as a docker archive under the tutorial's own tag, so containerd's import gives it the name the
# kubelet resolves the tutorial's `image: quantzoo/strategy-template:0.1.0` to (as `kind load` would).
TEMPLATE_TAG="quantzoo/strategy-template:0.1.0"
build_strategy_template() {
  build_quantzoo >/dev/null
  bah inspect --type image "$APP_REF" >/dev/null 2>&1 || bah pull --quiet "oci-archive:$APP_TAR" >/dev/null
  local dir="$REPO/examples/strategy-template" key tar
  key="$(
    cd "$dir"
    { echo "$TEMPLATE_TAG $APP_REF"; git ls-files -z . | xargs -0 sha256sum; } | sha256sum | cut -c1-12
  )"
  tar="$OUT/strategy-template-${key}.docker.tar"
  dockerfile_image strategy-template "$key" docker-archive "$TEMPLATE_TAG" "$dir" "QUANTZOO_IMAGE=$APP_REF"
  echo "strategy-template $TEMPLATE_TAG $tar"
}

# -- 3. node images: the pod sandbox (pause) and CoreDNS, FROM scratch with static binaries -------------
scratch_image() {  # name binary uid
  local name="$1" bin="$2" uid="$3" key ref tar ctr
  key="$(sha256sum "$bin" | cut -c1-12)"
  ref="localhost/$name:$key"
  tar="$OUT/$name-$key.oci.tar"
  if [[ ! -s "$tar" ]]; then
    ctr="$(bah from scratch)"
    bah copy "$ctr" "$bin" "/$name" >/dev/null
    bah config --entrypoint "[\"/$name\"]" --user "$uid:$uid" "$ctr"
    bah commit --quiet "$ctr" "$ref" >/dev/null
    bah rm "$ctr" >/dev/null
    bah push --quiet "$ref" "oci-archive:$tar.tmp:$ref"
    mv "$tar.tmp" "$tar"
  fi
  echo "$name $ref $tar"
}

build_node_images() {
  local node_bin
  node_bin="$(bash "$REPO/hack/build-node.sh")"
  scratch_image pause "$node_bin/pause" 65535
  scratch_image coredns "$node_bin/coredns" 65532
}

case "$WHAT" in
  quantzoo) build_quantzoo ;;
  node) build_node_images ;;
  strategy-template) build_strategy_template ;;
  all) build_quantzoo; build_node_images ;;
  *) log "usage: $0 [quantzoo|node|all|strategy-template]"; exit 2 ;;
esac
