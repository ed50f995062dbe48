#!/usr/bin/env bash
# Builds berth's container image (Containerfile) on a machine with no container registry: the Debian 12 base image is
# made here by debootstrap from Debian's own packages, then buildah builds the Containerfile over it. Needs root,
# buildah, debootstrap and npm (Debian: apt-get install buildah debootstrap). See docs/image.md.
#
#   scripts/build-image.sh                      # localhost/berth:VERSION (VERSION from package.json)
#   scripts/build-image.sh --target microvm     # localhost/berth:VERSION-microvm: QEMU and the guest kernel too
#   scripts/build-image.sh --tag REGISTRY/berth:VERSION
#
# Environment: MIRROR (Debian mirror, default http://deb.debian.org/debian), BASE_IMAGE (default
# localhost/debian:bookworm, made once and reused; --rebuild-base makes it again), BUILDAH_ISOLATION (default chroot,
# which works inside containers and VMs alike), EXTRA_CA_DIR (*.crt trusted by the build stages; default
# /usr/local/share/ca-certificates, the host's own additions).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=runtime
TAG=
REBUILD_BASE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target) TARGET=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --rebuild-base) REBUILD_BASE=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$TARGET" in runtime|microvm) ;; *) echo "build-image: --target is runtime or microvm" >&2; exit 2 ;; esac

MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian:bookworm}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
VERSION=$(node -p "require('./package.json').version")
[ -n "$TAG" ] || TAG="localhost/berth:${VERSION}$([ "$TARGET" = microvm ] && echo -microvm || true)"

for tool in buildah debootstrap npm node; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is not installed (Debian: apt-get install buildah debootstrap)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "build-image: run as root (debootstrap and buildah's storage)" >&2; exit 2; }

WORK=$(mktemp -d /var/tmp/berth-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
step() { printf 'build-image: %s\n' "$*" >&2; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }

# 1. The base: Debian 12 (bookworm), minbase, from Debian's packages. Made once; reused while it exists.
if [ "$REBUILD_BASE" = 1 ] || ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  step "debootstrap bookworm (minbase) from $MIRROR"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  # As the official debian:bookworm-slim: no apt lists or caches kept, no docs; apt cleans after itself.
  rm -rf "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/var/cache/apt/"*.bin "$WORK/rootfs/var/log/"*.log
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' "$MIRROR" "$MIRROR" >"$WORK/rootfs/etc/apt/sources.list"
  printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' >"$WORK/rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
  printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n' >"$WORK/rootfs/etc/apt/apt.conf.d/docker-clean"
  tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/rootfs.tar" .
  rm -rf "$WORK/rootfs"
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$WORK/rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
  rm -f "$WORK/rootfs.tar"
  step "base image $BASE_IMAGE made ($(elapsed))"
else
  step "base image $BASE_IMAGE exists (--rebuild-base to make it again)"
fi

# 2. The build context: the package as npm would publish it (prepack builds dist/) and the lockfile.
step "npm pack"
mkdir "$WORK/context"
npm pack --pack-destination "$WORK/context" >"$WORK/pack.log" 2>&1 || { tail -30 "$WORK/pack.log" >&2; exit 1; }
cp package-lock.json Containerfile "$WORK/context/"
# Certificate authorities this host adds to the system's (e.g. a TLS-intercepting proxy's), for the build stages'
# downloads from the npm registry; EXTRA_CA_DIR names another directory of *.crt files.
mkdir "$WORK/context/ca" && : >"$WORK/context/ca/.keep" # COPY wants something to copy
for crt in "${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"/*.crt; do [ -f "$crt" ] && cp "$crt" "$WORK/context/ca/"; done

# 3. The image.
step "buildah bud --target $TARGET -t $TAG"
buildah bud --layers --force-rm --target "$TARGET" --build-arg "BASE=$BASE_IMAGE" -f "$WORK/context/Containerfile" -t "$TAG" "$WORK/context"
step "built $TAG in $(elapsed): $(buildah images --format '{{.Size}}' "$TAG" 2>/dev/null | head -1)"
cat >&2 <<EOF
build-image: run it:   podman run --rm --network host --privileged $TAG               (the demo at http://127.0.0.1:8787/mcp)
build-image: push it:  buildah push $TAG docker://REGISTRY/${TAG##*/}
build-image:           then: cd deploy/kubernetes && kustomize edit set image ${TAG%:*}=REGISTRY/${TAG##*/}
EOF
