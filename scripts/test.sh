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
# Files run in worker processes, one per core (--parallel): much of a file's time is spent
# waiting on the servers, tools and namespaces it started, so two workers on two cores took the
# suite from 484 s to 289 s. Each file has its own module registry (--isolate, implied); names
# of namespaces and devices carry the worker's pid, ports are chosen by the kernel.
"${BUN[@]}" test --timeout 30000 --parallel "$@"
