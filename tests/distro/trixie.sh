#!/usr/bin/env bash
# Prove Quire's install on Debian 13 (trixie), Python 3.13 and SANE 1.3.1, as a technician would
# meet it: a trixie root made with debootstrap from Debian's packages, a fresh clone of this
# repository's HEAD (committed work only) in it, and the README's commands run there as root in
# a chroot: `make setup`, `make test`, `make demo`.
#
#   sudo tests/distro/trixie.sh                      # the whole suite
#   sudo tests/distro/trixie.sh tests/station -x     # pytest arguments instead (PYTEST_ARGS)
#
# TRIXIE_ROOT  the root (default /var/tmp/quire-trixie); made once and reused, never inside the repo
# ARCH         amd64 or arm64 (default: this machine's); a foreign one runs under qemu-user-static
# MIRROR       Debian mirror (default: the one this machine's apt sources name)
# DEMO=0       skip `make demo`
#
# A chroot is not a booted system: no systemd as PID 1 and no udev daemon, so the installer's
# service steps are not exercised here (tests/systemd checks the units and the installer's steps).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOT="${TRIXIE_ROOT:-/var/tmp/quire-trixie}"
ARCH="${ARCH:-$(dpkg --print-architecture)}"
DEMO="${DEMO:-1}"

die() { echo "trixie.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

host_mirror() {
  # The first Debian archive (not -security) this machine's apt sources name, in either format.
  local uri
  uri=$(grep -hoE '(URIs:|^deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+' \
          /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -oE 'https?://[^[:space:]]+/debian/?$' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

make_root() {
  local mirror="$1" foreign=()
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
    [ -e "/proc/sys/fs/binfmt_misc/qemu-${QEMU_ARCH}" ] ||
      die "no binfmt handler for $ARCH: apt-get install qemu-user-static binfmt-support (binfmt_misc mounted)"
    foreign=(--foreign)
  fi
  step "debootstrap trixie ($ARCH) from $mirror into $ROOT"
  mkdir -p "$ROOT"
  debootstrap "${foreign[@]}" --arch="$ARCH" --variant=minbase --include=make,ca-certificates \
    trixie "$ROOT" "$mirror"
  if [ ${#foreign[@]} -gt 0 ]; then
    chroot "$ROOT" /debootstrap/debootstrap --second-stage
  fi
  cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $mirror trixie main
deb $mirror trixie-updates main
deb ${mirror%/debian*}/debian-security trixie-security main
EOF
}

MOUNTS=()
mount_into() {   # mount_into TARGET mount-args...
  local target="$ROOT$1"; shift
  mkdir -p "$target"
  mount "$@" "$target"
  MOUNTS=("$target" "${MOUNTS[@]}")
}
unmount_all() {
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
case "$ARCH" in
  amd64) QEMU_ARCH=x86_64 ;;
  arm64) QEMU_ARCH=aarch64 ;;
  *) die "ARCH must be amd64 or arm64 (got $ARCH)" ;;
esac
case "$ROOT" in "$REPO"|"$REPO"/*) die "TRIXIE_ROOT must be outside the repository ($ROOT)" ;; esac
[ -x "$ROOT/usr/bin/apt-get" ] || make_root "$(host_mirror)"
grep -q '^13' "$ROOT/etc/debian_version" || die "$ROOT is not Debian 13 (etc/debian_version: $(cat "$ROOT/etc/debian_version"))"

trap unmount_all EXIT
mount_into /proc -t proc proc
mount_into /sys -t sysfs sysfs
mount_into /dev --bind /dev
mount_into /dev/pts --bind /dev/pts
mount_into /dev/shm -t tmpfs -o mode=1777 tmpfs
mount_into /run -t tmpfs -o mode=0755 tmpfs
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The host's CA bundle, for pip: a site whose TLS proxy the host trusts is trusted in the root too.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca-certificates.crt"

step "fresh clone of $(git -C "$REPO" rev-parse --short HEAD) into $ROOT/root/quire"
rm -rf "$ROOT/root/quire"
git clone -q "$REPO" "$ROOT/root/quire"

# A clean environment, as a technician's root shell on the station would have (CI passes through).
in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" CI="${CI:-}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/host-ca-certificates.crt bash -c "cd /root/quire && $1"
}

step "make setup; the station installer's machine check"
in_root "make setup"
in_root "source systemd/install-station.sh && check_machine"
in_root '. /etc/os-release; echo "    $PRETTY_NAME $(dpkg --print-architecture), $(.venv/bin/python -V),"\
  "libsane1 $(dpkg-query -W -f "\${Version}" libsane1)"'
step "make test ${*:-(the whole suite)}"
in_root "make test PYTEST_ARGS='$*'"
if [ "$DEMO" = 1 ]; then
  step "make demo"
  in_root "make demo"
fi
step "Debian 13 ($ARCH): make setup, make test$([ "$DEMO" = 1 ] && echo ", make demo") passed"
