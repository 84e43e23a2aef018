#!/usr/bin/env bash
# `npm test`: the whole suite. Installs the pinned Bun and the locked dependencies, builds
# dist/citadel (the end-to-end tests drive the compiled binary), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bun.sh
"${BUN[@]}" install --frozen-lockfile
"${BUN[@]}" scripts/build.ts
# 30 s per test unless the test says otherwise: end-to-end tests start servers, and Bun's default
# of 5 s failed them now and then on a loaded machine (bunfig.toml has no key for it).
"${BUN[@]}" test --timeout 30000 "$@"
