#!/usr/bin/env bash
# `npm test`: the whole suite. Installs the pinned Bun and the locked dependencies, builds
# dist/citadel (the end-to-end tests drive the compiled binary), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bun.sh
"${BUN[@]}" install --frozen-lockfile
"${BUN[@]}" scripts/build.ts
"${BUN[@]}" test "$@"
