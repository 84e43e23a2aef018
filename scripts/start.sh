#!/usr/bin/env bash
# `npm start`: installs the pinned Bun and the locked dependencies, then runs Citadel on its
# embedded default (./.citadel, https://127.0.0.1:8443). Extra arguments go to `citadel serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bun.sh
"${BUN[@]}" install --frozen-lockfile
exec "${BUN[@]}" src/main.ts serve "$@"
