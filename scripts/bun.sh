# Sourced by the start and test scripts: makes "$BUN" the pinned Bun, installing nothing
# globally. A machine with only Node.js and npm gets it through npx (cached after the first run).
BUN_VERSION="$(node -p "require('./package.json').packageManager.split('@')[1]")"
if command -v bun >/dev/null 2>&1 && [ "$(bun --version)" = "$BUN_VERSION" ]; then
  BUN=(bun)
else
  echo "using Bun $BUN_VERSION through npx (the bun on PATH is missing or another version)" >&2
  BUN=(npx --yes "bun@$BUN_VERSION")
fi
