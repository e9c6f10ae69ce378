#!/usr/bin/env bash
# The image pipeline on arm64, as a Raspberry Pi runs it: Debian's python3 for arm64 in a debootstrap
# root, the arm64 wheels of the pinned numpy, OpenCV and Pillow from PyPI, the pipeline's tests
# (tests/station/pipeline) run there, and every page of a fixed set processed on both sides and
# compared: encoded bytes (SHA-256) and the processing record, field by field.
#
#   sudo tests/distro/arm64.sh                        # the pipeline tests, then the comparison
#   sudo tests/distro/arm64.sh -k deskew              # pytest arguments for the tests
#
# ARM64_ROOT  the root (default /var/tmp/quire-arm64); made once and reused, never inside the repo
# SUITE       Debian suite (default bookworm, which Raspberry Pi OS is built on)
# QEMU_CPU    the arm64 core qemu emulates (default max: every feature qemu has, so OpenCV takes its
#             NEON_DOTPROD/FP16/BF16 paths; cortex-a72 is a Pi 4's core, cortex-a76 a Pi 5's)
# MIRROR      Debian mirror (default: the one this machine's apt sources name)
#
# On an x86 machine the root's programs run under qemu-user-static: through binfmt_misc (the kernel
# hands an arm64 ELF to /usr/libexec/qemu-binfmt/aarch64-binfmt-P), or, where the kernel has no
# binfmt_misc or refuses to register a handler (a container without the privilege to write
# /proc/sys/fs/binfmt_misc/register), by calling qemu-aarch64-static -L ROOT directly — enough for
# the tests and the comparison, not for debootstrap's second stage (dpkg's scripts exec further
# arm64 programs). On a Pi (aarch64) the same script runs natively, no qemu.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOT="${ARM64_ROOT:-/var/tmp/quire-arm64}"
SUITE="${SUITE:-bookworm}"
QEMU_CPU="${QEMU_CPU:-max}"
HOST_PY="${HOST_PY:-$REPO/.venv/bin/python}"
# What the pipeline and its tests import, at the versions requirements.lock pins.
PACKAGES="numpy opencv-python-headless pillow pydantic pydantic-core annotated-types typing-extensions
  typing-inspection pynacl cffi pycparser rfc8785 sqlite-utils sqlite-fts4 click click-default-group tabulate
  python-dateutil six pluggy iniconfig packaging pygments pytest pytest-timeout pikepdf lxml"

die() { echo "arm64.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

host_mirror() {
  local uri
  uri=$(grep -hoE '(URIs:|^deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+' \
          /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -oE 'https?://[^[:space:]]+/debian/?$' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

NATIVE=0; BINFMT=0
[ "$(uname -m)" = aarch64 ] && NATIVE=1
if [ "$NATIVE" = 0 ]; then
  command -v qemu-aarch64-static >/dev/null ||
    die "no qemu-aarch64-static: apt-get install qemu-user-static binfmt-support"
  if [ "$(cat /proc/sys/fs/binfmt_misc/status 2>/dev/null)" = enabled ] &&
     grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    BINFMT=1
  else
    echo "arm64.sh: no binfmt_misc handler for aarch64 here:" >&2
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
      echo "  /proc/sys/fs/binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc;" \
           "a container may not: the mount and its register file belong to the host's kernel)" >&2
    else
      echo "  binfmt_misc: $(cat /proc/sys/fs/binfmt_misc/status); qemu-aarch64:" \
           "$(head -n1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null || echo 'not registered')" \
           "(update-binfmts --enable qemu-aarch64, as root on the host)" >&2
    fi
    echo "  running the root's python under qemu-aarch64-static -L instead" >&2
  fi
fi

# run_root CMD…: a command of the root as root in it (chroot: natively or through binfmt), or its
# python under qemu-aarch64-static -L when there is no binfmt (no chroot then: paths are the root's).
run_root() {
  if [ "$NATIVE" = 1 ] || [ "$BINFMT" = 1 ]; then
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin "$@"
  else
    local prog="$1"; shift
    [ "$prog" = /opt/venv/bin/python ] || die "without binfmt only the root's python runs (asked: $prog)"
    env -i HOME=/root LANG=C.UTF-8 PYTHONHOME=/usr PYTHONPATH="$ROOT/opt/venv/lib/python$PYV/site-packages" \
      QEMU_LD_PREFIX="$ROOT" qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3" "$@"
  fi
}

make_root() {
  local mirror
  mirror="$(host_mirror)"
  [ "$NATIVE" = 1 ] || [ "$BINFMT" = 1 ] || die "making the root needs binfmt (debootstrap's second stage runs
  dpkg's arm64 scripts): make it on a machine that has it, or on the Pi, then point ARM64_ROOT at it"
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  step "debootstrap $SUITE (arm64) from $mirror into $ROOT"
  mkdir -p "$ROOT"
  debootstrap --foreign --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,ca-certificates,fonts-dejavu-core,fonts-wqy-microhei "$SUITE" "$ROOT" "$mirror"
  chroot "$ROOT" /debootstrap/debootstrap --second-stage
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
case "$ROOT" in "$REPO"|"$REPO"/*) die "ARM64_ROOT must be outside the repository ($ROOT)" ;; esac
[ -x "$ROOT/usr/bin/python3" ] || make_root
PYV=$(ls "$ROOT/usr/lib" | sed -n "s/^python\(3\.[0-9]*\)$/\1/p" | head -n1)
[ -n "$PYV" ] || die "no python3 in $ROOT/usr/lib"
for font in truetype/dejavu/DejaVuSans.ttf truetype/wqy/wqy-microhei.ttc; do
  [ -e "$ROOT/usr/share/fonts/$font" ] || die "$ROOT lacks /usr/share/fonts/$font (the synthetic pages' fonts):" \
    "chroot $ROOT apt-get install fonts-dejavu-core fonts-wqy-microhei"
done

step "arm64 wheels for Python $PYV (pins from requirements.lock), from PyPI"
mkdir -p "$ROOT/root/wheels"
pins=()
for name in $PACKAGES; do
  pin=$(grep -oiE "^$name==[^ ;]+" "$REPO/requirements.lock") || die "$name is not pinned in requirements.lock"
  pins+=("$pin")
done
"$HOST_PY" -m pip download -q -d "$ROOT/root/wheels" --only-binary=:all: --no-deps \
  --python-version "$PYV" --implementation cp --abi "cp${PYV/./}" --platform manylinux2014_aarch64 \
  --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 --platform any "${pins[@]}"

step "a venv of the root's python3 with those wheels"
if [ ! -x "$ROOT/opt/venv/bin/python" ]; then
  if [ "$NATIVE" = 1 ] || [ "$BINFMT" = 1 ]; then
    run_root /usr/bin/python3 -m venv --without-pip /opt/venv
  else
    mkdir -p "$ROOT/opt/venv/lib/python$PYV/site-packages" "$ROOT/opt/venv/bin"
    ln -sf /usr/bin/python3 "$ROOT/opt/venv/bin/python"
  fi
fi
# The root's own pip (python3-venv's bundled wheel) installs the downloaded wheels, offline.
pipwheel=$(ls "$ROOT"/usr/share/python-wheels/pip-*.whl | head -n1)
run_root /opt/venv/bin/python "${pipwheel#"$ROOT"}/pip" install -q --no-index --no-deps --find-links /root/wheels \
  --target "/opt/venv/lib/python$PYV/site-packages" --upgrade "${pins[@]}"

# The tests run quire-station as a program, as its console script would be installed.
printf '#!/opt/venv/bin/python\nimport sys\nfrom station.cli import main\nsys.exit(main())\n' \
  > "$ROOT/opt/venv/bin/quire-station"
chmod 755 "$ROOT/opt/venv/bin/quire-station"

step "this repository's HEAD (committed work only) into $ROOT/root/quire"
rm -rf "$ROOT/root/quire"
mkdir -p "$ROOT/root/quire"
git -C "$REPO" archive HEAD | tar -x -C "$ROOT/root/quire"
cp "$REPO/tests/distro/pipeline_digest.py" "$ROOT/root/quire/tests/distro/" 2>/dev/null || true

if [ "$NATIVE" = 1 ] || [ "$BINFMT" = 1 ]; then
  mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc"; trap 'umount "$ROOT/proc"' EXIT; }
fi
export_path="/root/quire:/root/quire/protos:/opt/venv/lib/python$PYV/site-packages"
in_quire() {   # in_quire ARGS…: the root's python in /root/quire with the project on its path
  if [ "$NATIVE" = 1 ] || [ "$BINFMT" = 1 ]; then
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/opt/venv/bin:/usr/bin:/bin \
      PYTHONPATH="$export_path" CI="${CI:-}" QEMU_CPU="$QEMU_CPU" sh -c 'cd /root/quire && exec /opt/venv/bin/python "$@"' sh "$@"
  else
    (cd "$ROOT/root/quire" && env -i HOME=/root LANG=C.UTF-8 PYTHONHOME="$ROOT/usr" QEMU_CPU="$QEMU_CPU" \
      PYTHONPATH="$ROOT/root/quire:$ROOT/root/quire/protos:$ROOT/opt/venv/lib/python$PYV/site-packages" \
      qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3" "$@")
  fi
}

step "versions on arm64"
in_quire -c 'import platform, numpy, cv2, PIL.features as f, PIL
print("   ", platform.machine(), platform.python_version(), "numpy", numpy.__version__, "opencv", cv2.__version__,
      "Pillow", PIL.__version__, "libjpeg-turbo", f.version("libjpeg_turbo"))
print("    OpenCV SIMD:", [l.strip() for l in cv2.getBuildInformation().splitlines() if "Baseline" in l or "Dispatched" in l])'

status=0
step "each page processed here and on arm64: encoded bytes and records compared"
pages="$ROOT/root/digest-pages"
rm -rf "$pages"; mkdir -p "$pages"
# This machine runs the very code copied into the root (HEAD), not the working tree.
on_host() { (cd "$ROOT/root/quire" && PYTHONPATH="$ROOT/root/quire:$ROOT/root/quire/protos" "$HOST_PY" "$@"); }
on_host tests/distro/pipeline_digest.py render "$pages"
on_host tests/distro/pipeline_digest.py digest "$pages" > "$pages/host.json"
in_quire tests/distro/pipeline_digest.py digest /root/digest-pages > "$pages/arm64.json"
on_host tests/distro/pipeline_digest.py compare "$pages/host.json" "$pages/arm64.json" || status=$?
step "tests/station/pipeline on arm64 ${*:-}"
# Emulated, a test takes 10-30 times as long: the per-test timeout is raised to match. test_master
# scans, syncs to a central archive and verifies there: the whole stack (gRPC stubs made by `make`,
# cryptography, the archive), which ARCH=arm64 tests/distro/trixie.sh installs and runs; not here.
in_quire -m pytest tests/station/pipeline -q -p no:cacheprovider -o timeout=6000 \
  --ignore=tests/station/pipeline/test_master.py "$@" || status=$?

exit $status
