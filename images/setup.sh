#!/usr/bin/env bash
# Installs the Debian tools the image builder and the image tests use, if missing: mmdebstrap
# (root filesystems), umoci (unpacks images for the tests), runc (runs them). Safe to run again.
set -euo pipefail
missing=()
for tool in mmdebstrap umoci runc; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
