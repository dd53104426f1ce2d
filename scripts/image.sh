#!/usr/bin/env bash
# Builds docker/Dockerfile with Debian's podman (issue 16), with no registry: the FROM image
# (debian:12-slim) is a Debian 12 minbase made with debootstrap from this machine's apt mirror
# and imported once under that name. Field notes (../shared/STYLE.md): `--runtime runc` (crun
# refuses hybrid cgroups), explicit ulimits, host network.
#
#   scripts/image.sh [TAG]     default tag: localhost/mpn-benefits:dev; prints the tag
#   env: MB_BASE_CACHE (the minbase tarball; default /var/tmp/mb-debian12-minbase.tar)
# As root (debootstrap, rootful podman). Exit 3: podman cannot run here (the reason on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

TAG=${1:-localhost/mpn-benefits:dev}
BASE=docker.io/library/debian:12-slim
CACHE=${MB_BASE_CACHE:-/var/tmp/mb-debian12-minbase.tar}
[ "$(id -u)" = 0 ] || die "scripts/image.sh runs as root (debootstrap, rootful podman)"
ensure_packages container
PODMAN=(podman --runtime runc)

# Can podman run a container at all here? (Not inside every sandbox.)
if ! out=$("${PODMAN[@]}" info 2>&1 >/dev/null); then
	printf 'podman cannot run here: %s\n' "$(echo "$out" | tail -n 3)" >&2
	exit 3
fi

if ! "${PODMAN[@]}" image exists "$BASE"; then
	if [ ! -s "$CACHE" ]; then
		mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
		[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
		[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
		root=$(mktemp -d /var/tmp/mb-minbase.XXXXXX)
		log "debootstrap a Debian 12 minbase ($mirror) for $BASE"
		debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
			tail -n 5 "$root.log" >&2
			rm -rf "$root" "$root.log"
			die "debootstrap failed"
		}
		# The mirror of this machine, inside the image too.
		if [ -f /etc/apt/sources.list.d/debian.sources ]; then
			cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
			: >"$root/etc/apt/sources.list"
		fi
		rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
		tar -C "$root" -cf "$CACHE.tmp" .
		mv "$CACHE.tmp" "$CACHE"
		rm -rf "$root" "$root.log"
	fi
	log "podman import $CACHE as $BASE"
	"${PODMAN[@]}" import "$CACHE" "$BASE" >/dev/null
fi

log "podman build -f docker/Dockerfile -t $TAG"
"${PODMAN[@]}" build --pull=never --network=host \
	--ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
	-f docker/Dockerfile -t "$TAG" . >&2
echo "$TAG"
