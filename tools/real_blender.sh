#!/usr/bin/env bash
# Run a command inside a Debian 13 ("trixie") root holding a real Blender (4.3.2) executable, building the root once.
#
#   bash tools/real_blender.sh [--build-only] [COMMAND [ARG…]]     (as root; default COMMAND: blender --version)
#
# The root lives outside the repository: $SCENEFIT_REAL_BLENDER_ROOT, default /var/cache/scenefit/trixie-root. It is
# built with debootstrap (installed if missing) from the Debian mirror named in this machine's apt sources, into a
# temporary folder renamed into place only when complete, under an exclusive lock: a half-built root is never used.
# Runs take the lock shared, so a rebuild never swaps the root under a running command. A failed build exits non-zero
# and says why; it is never a skip.
#
# A command runs in a mount namespace of its own with /proc, /dev, /dev/shm and /sys bind-mounted into the root, and
# the repository plus every folder in $SCENEFIT_REAL_BLENDER_SHARE (colon-separated) bind-mounted at the same path, so
# paths mean the same inside and out. Everything is unmounted when the command ends, whatever the way (trap; the
# namespace dies with it too). The environment inside is clean: PATH, HOME=/root, LANG, plus the command's own
# (use `env VAR=value program …`).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/tools/real_blender.sh"
ROOT=${SCENEFIT_REAL_BLENDER_ROOT:-/var/cache/scenefit/trixie-root}
SUITE=trixie
PACKAGES="blender python3-torch python3-matplotlib python3-pil python3-numpy xvfb xauth imagemagick
libegl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0 libgl1"
STAMP=.scenefit-root   # inside the root: the package list it was built with, written last

die() {
  echo "real_blender.sh: error: $*" >&2
  exit 1
}

# The Debian mirror this machine's own apt uses (one-line and deb822 formats); never a host name of our own.
debian_mirror() {
  local files=() uri
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  [[ ${#files[@]} -gt 0 ]] || return 1
  uri=$(sed -n -E -e 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([a-z+]+:[^[:space:]]+).*/\2/p' \
    -e 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p' "${files[@]}" | grep -E '/debian/?$' | head -n 1)
  [[ -n $uri ]] || return 1
  echo "${uri%/}"
}

# Bind-mount SRC at ROOT/DST (DST defaults to SRC), recording it for the unmount trap.
MOUNTED=()
bind() {
  local src=$1 dst=$2$3
  mkdir -p "$dst"
  mount --bind "$src" "$dst"
  MOUNTED+=("$dst")
}
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true   # lazily when still busy
  done
  MOUNTED=()
}
bind_system() {
  local root=$1
  bind /proc "$root" /proc
  bind /dev "$root" /dev
  bind /dev/shm "$root" /dev/shm
  bind /sys "$root" /sys
}

in_root() {
  local root=$1
  shift
  chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# --- inside a private mount namespace (re-executed through unshare) ------------------------------------------------
if [[ ${1:-} == __build ]]; then
  tmp=$2 mirror=$3
  trap unmount_all EXIT
  echo "real_blender.sh: debootstrap $SUITE from $mirror into $tmp" >&2
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$tmp" "$mirror" >&2 ||
    die "debootstrap $SUITE $mirror failed (log: $tmp/debootstrap/debootstrap.log)"
  bind_system "$tmp"
  in_root "$tmp" apt-get update >&2 || die "apt-get update inside the root failed"
  # shellcheck disable=SC2086
  in_root "$tmp" apt-get install -y --no-install-recommends $PACKAGES >&2 || die "apt-get install inside the root failed"
  in_root "$tmp" apt-get clean >&2
  in_root "$tmp" blender --factory-startup -b --python-expr 'import bpy, torch' >&2 ||
    die "the new root's blender cannot start or import torch"
  echo "$PACKAGES" >"$tmp/$STAMP"
  exit 0
fi
if [[ ${1:-} == __run ]]; then
  shift
  trap unmount_all EXIT
  bind_system "$ROOT"
  bind "$REPO" "$ROOT" "$REPO"
  IFS=: read -r -a shares <<<"${SCENEFIT_REAL_BLENDER_SHARE:-}"
  for share in "${shares[@]}"; do
    [[ -n $share ]] || continue
    [[ -d $share ]] || die "SCENEFIT_REAL_BLENDER_SHARE names $share, which is not a folder"
    bind "$share" "$ROOT" "$share"
  done
  in_root "$ROOT" "$@"   # no exec: the trap must run
  exit $?
fi

# --- outside: lock, build if needed, run -------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot and bind mounts)"
build_only=0
if [[ ${1:-} == --build-only ]]; then
  build_only=1
  shift
fi
[[ $# -gt 0 ]] || set -- blender --version

ready() { [[ -f $ROOT/$STAMP && "$(cat "$ROOT/$STAMP")" == "$PACKAGES" ]]; }

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
if ! { flock -s 9 && ready; }; then
  flock -x 9   # only one builder; the others wait here and then find the root ready
  if ! ready; then
    command -v debootstrap >/dev/null || {
      echo "real_blender.sh: installing debootstrap" >&2
      apt-get install -y debootstrap >&2 || { apt-get update >&2 && apt-get install -y debootstrap >&2; } ||
        die "cannot install debootstrap"
    }
    mirror=$(debian_mirror) || die "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list{,.d/*}"
    tmp=$(mktemp -d "$ROOT.building.XXXXXX")
    started=$SECONDS
    # The build's mounts live in their own namespace: when it ends nothing is mounted under $tmp here, so removing a
    # failed build can never reach into /dev or /proc.
    if ! unshare --mount --propagation private bash "$SELF" __build "$tmp" "$mirror"; then
      rm -rf --one-file-system "$tmp"
      die "building the Debian $SUITE root failed (see above); nothing was left at $ROOT"
    fi
    if [[ -e $ROOT ]]; then   # an outdated root: no run holds it (they hold the lock shared)
      mv "$ROOT" "$ROOT.old.$$"
      rm -rf --one-file-system "$ROOT.old.$$"
    fi
    mv "$tmp" "$ROOT"
    echo "real_blender.sh: built $ROOT in $((SECONDS - started)) s" >&2
  fi
  flock -s 9   # downgrade: runs may share the root now
fi
[[ $build_only -eq 1 ]] && exit 0
unshare --mount --propagation private bash "$SELF" __run "$@"
