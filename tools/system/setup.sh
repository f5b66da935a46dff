#!/usr/bin/env bash
# Installs the Debian packages of tools/system/packages.txt that are missing, and checks that the
# commands of tools/system/machine.txt are there. Run by `make system`, which every target that
# needs the machine's packages depends on. When nothing is missing it reads the package database
# once and says nothing; otherwise it runs `apt-get update` once and installs only what is missing.
#
# Usage: tools/system/setup.sh [--check] [--packages-only]
#   --check          install nothing: list what is missing and exit 1 if anything is
#   --packages-only  leave machine.txt unchecked (a bare Debian root, as in tests/system)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
check_only=false
check_machine=true
for option in "$@"; do
    case "$option" in
        --check) check_only=true ;;
        --packages-only) check_machine=false ;;
        *) echo "[system] unknown option $option (allowed: --check, --packages-only)" >&2; exit 2 ;;
    esac
done

# The first word of each line that is not a comment or blank.
packages=()
while read -r name _; do
    case "$name" in ''|'#'*) continue ;; esac
    packages+=("$name")
done < "$here/packages.txt"

missing_commands=()
while $check_machine && read -r name _; do
    case "$name" in ''|'#'*) continue ;; esac
    command -v "$name" >/dev/null 2>&1 || missing_commands+=("$name")
done < "$here/machine.txt"
if [ ${#missing_commands[@]} -gt 0 ]; then
    echo "[system] this machine lacks ${missing_commands[*]}, which the project expects the machine to bring" \
         "(tools/system/machine.txt says why and which version)" >&2
    exit 1
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "[system] no dpkg-query: this project installs its system packages with Debian's apt;" \
         "on another system install the equivalents of tools/system/packages.txt by hand" >&2
    exit 1
fi

# One query for all of them; a package never installed is reported on stderr, which says nothing new.
installed="$(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" 2>/dev/null || true)"
missing=()
for package in "${packages[@]}"; do
    grep -qx "installed $package" <<<"$installed" || missing+=("$package")
done
[ ${#missing[@]} -gt 0 ] || exit 0

if $check_only; then
    echo "[system] missing Debian packages: ${missing[*]} (make system installs them)" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "[system] installing ${missing[*]} needs root, and there is no sudo: run tools/system/setup.sh as root" >&2
        exit 1
    }
    sudo=(sudo)
fi
echo "[system] installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
