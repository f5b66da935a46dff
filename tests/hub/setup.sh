#!/usr/bin/env bash
# Installs what the local hub tests (tests/hub) need beyond the Python virtualenv and the system
# packages (`make system` brings Debian's chromium): configurable-http-proxy and playwright-core
# from npm, at the versions package-lock.json pins. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")"

# npm ci installs exactly the lockfile; do it again only when the lockfile changed since.
if ! cmp -s package-lock.json node_modules/.installed-from-lock; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.installed-from-lock
fi
