#!/bin/sh
# Installs Citadel on this machine as a systemd service (see docs/install.md).
#
#   scripts/install.sh [BINARY] [install flags...]
#
# BINARY is the compiled Citadel to install (default: dist/citadel of this checkout); every
# other argument goes to `citadel install` (--root DIR, --seal credential|shamir|key-file,
# --yes). The binary does the work: this wrapper only finds it.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
case "${1-}" in
  "" | -*) binary="$here/../dist/citadel" ;;
  *) binary=$1; shift ;;
esac

if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
  echo "install.sh: no executable Citadel binary at $binary: build one (bun scripts/build.ts) or name it first" >&2
  exit 1
fi
exec "$binary" install "$@"
