#!/usr/bin/env bash
# Install a Quire scanning station on a fresh Debian 12 or 13 (bookworm, trixie) or Raspberry Pi OS machine,
# arm64 or amd64: Debian packages, the Python environment, the quire user and groups, the udev
# rule for scanners, a config template, and the quire-station service, enabled and started.
#
#   sudo systemd/install-station.sh [--id STATION_ID]
#
# Safe to run again (an upgrade): existing configuration, key and page store are kept.
# --files-only installs just the files under $DESTDIR (no packages, users or services); the
# tests use it to check the layout.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/quire
STATION_HOME=/var/lib/quire/station
DESTDIR="${DESTDIR:-}"
STATION_ID=""
FILES_ONLY=0

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "install-station: $*" >&2; exit 1; }
step() { echo "==> $*"; }

supported_python() { command -v python3.11 || command -v python3.12 || command -v python3.13; } >/dev/null

check_machine() {
  [ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
  [ -r /etc/debian_version ] || die "this installer is for Debian or Raspberry Pi OS"
  case "$(dpkg --print-architecture)" in
    amd64|arm64) ;;
    *) die "unsupported architecture $(dpkg --print-architecture); Quire stations run on amd64 or arm64" ;;
  esac
  supported_python || apt-get install -y -qq python3 >/dev/null
  supported_python || die "Quire needs Python 3.11, 3.12 or 3.13 (Debian 12 or 13, Raspberry Pi OS bookworm or trixie)"
}

install_code() {
  step "installing Quire into $PREFIX"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make rsync ca-certificates >/dev/null
  if [ "$SRC" != "$PREFIX" ]; then
    mkdir -p "$PREFIX"
    rsync -a --delete --exclude .venv --exclude .git --exclude '__pycache__' --exclude .pytest_cache \
      "$SRC"/ "$PREFIX"/
  fi
  # The Makefile installs the Debian packages Quire needs, the locked Python environment and the
  # generated gRPC code.
  make -C "$PREFIX" setup
  "$PREFIX/.venv/bin/python" -m compileall -q "$PREFIX/station" "$PREFIX/central" "$PREFIX/protos" || true
  ln -sf "$PREFIX/.venv/bin/quire-station" /usr/local/bin/quire-station
}

install_files() {
  step "installing units, users, directories, udev rule and config template${DESTDIR:+ under $DESTDIR}"
  install -D -m 0644 "$SRC/systemd/quire.sysusers" "$DESTDIR/usr/lib/sysusers.d/quire.conf"
  install -D -m 0644 "$SRC/systemd/quire.tmpfiles" "$DESTDIR/usr/lib/tmpfiles.d/quire.conf"
  install -D -m 0644 "$SRC/systemd/quire-station.service" "$DESTDIR/etc/systemd/system/quire-station.service"
  install -D -m 0644 "$SRC/hardware/70-quire-scanners.rules" "$DESTDIR/etc/udev/rules.d/70-quire-scanners.rules"
  if [ ! -e "$DESTDIR/etc/quire/station.toml" ]; then
    install -D -m 0644 "$SRC/systemd/station.toml" "$DESTDIR/etc/quire/station.toml"
  else
    echo "    keeping the existing /etc/quire/station.toml"
  fi
}

activate() {
  step "creating the quire user and groups, and the state directories"
  systemd-sysusers quire.conf
  systemd-tmpfiles --create quire.conf
  step "giving the quire group access to supported scanners"
  if udevadm control --ping 2>/dev/null; then
    udevadm control --reload
    udevadm trigger --subsystem-match=usb --action=add
  else
    # No udev daemon (a container or chroot): nothing to re-trigger now; udev reads the rule when it starts.
    echo "    systemd-udevd is not running; the rule applies once it does (or plug the scanner in again)"
  fi
  init_station
  step "enabling and starting quire-station"
  systemctl daemon-reload
  systemctl enable quire-station.service
  systemctl restart quire-station.service
}

init_station() {
  step "initialising the station (key and page store; kept if they exist)"
  # The daemon runs with UMask=0077; so must init, or the store, its WAL and pages/ keep the sudo
  # shell's 0022 and any local user reads station.db through the 0711 home. umask inside the command:
  # runuser's PAM session may set its own.
  # Of init's lines only the station and its key fingerprint: init also names a second way to register
  # it (by the full public key); the next steps below give the one to use, enrolment.
  runuser -u quire -- sh -c 'umask 0077 && exec "$@"' sh "$PREFIX/.venv/bin/quire-station" --home "$STATION_HOME" \
    init ${STATION_ID:+--id "$STATION_ID"} | sed -n '/^station \|^key fingerprint /p'
  # Stations initialised before that (an upgrade): take back what group and others could read. Not the
  # home itself (0711 from tmpfiles) nor a station.toml there, which operators' CLI may read.
  find "$STATION_HOME" -mindepth 1 ! -type l ! -name station.toml -perm /0077 -exec chmod go-rwx {} +
}

next_steps() {
  cat <<EOF

Installed. Next:
  1. Enrol with the central archive. It prints a pairing code; the archive operator finds it in
     'quire-central stations pending' with the key fingerprint above, and approves it:
       sudo -u quire quire-station --home $STATION_HOME enroll --central HOST:PORT
  2. Let operators queue batches:   sudo usermod -aG quire-operators OPERATOR   (then log in again)
  3. Check everything:              sudo quire-station doctor
  4. Follow the service:            systemctl status quire-station · journalctl -u quire-station -f
EOF
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --id) STATION_ID="${2:?--id needs a station id}"; shift 2 ;;
      --files-only) FILES_ONLY=1; shift ;;
      -h|--help) usage 0 ;;
      *) echo "install-station: unknown argument $1" >&2; usage 2 ;;
    esac
  done
  if [ "$FILES_ONLY" = 1 ]; then
    install_files
    exit 0
  fi
  [ -z "$DESTDIR" ] || die "DESTDIR is only for --files-only"
  check_machine
  install_code
  install_files
  activate
  next_steps
}

# Sourced (the tests call single steps), define the functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
