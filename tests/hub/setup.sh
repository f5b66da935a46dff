#!/usr/bin/env bash
# Installs what the local hub tests (tests/hub) need beyond the Python virtualenv: Debian's
# chromium for the browser test, and configurable-http-proxy plus playwright-core from npm, at
# the versions package-lock.json pins. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi

# npm ci installs exactly the lockfile; do it again only when the lockfile changed since.
if ! cmp -s package-lock.json node_modules/.installed-from-lock; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.installed-from-lock
fi
