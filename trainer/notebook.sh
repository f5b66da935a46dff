#!/usr/bin/env bash
# JupyterLab on this machine with the trainer's TensorFlow: the modern form of the tutorial's first exercise
# (`docker run -p 8888:8888 tensorflow/tensorflow`). The virtualenv is cached under $CACHE, keyed by the
# pins, so a second start takes seconds. Listens on 127.0.0.1 only, behind a token.
#   CACHE=~/.cache/mlplatform NOTEBOOK_PORT=8888 [NOTEBOOK_TOKEN=...] trainer/notebook.sh
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CACHE:?set CACHE to the cache directory (the Makefile does)}"
port="${NOTEBOOK_PORT:-8888}"
pins_hash=$(cat trainer/requirements.txt trainer/notebook-requirements.txt | sha256sum | cut -c1-12)
venv="$CACHE/notebook-venv-$pins_hash"

if [ ! -f "$venv/.installed" ]; then
  echo "Creating $venv (TensorFlow + JupyterLab; a few minutes the first time)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r trainer/requirements.txt -r trainer/notebook-requirements.txt
  touch "$venv/.installed"
fi

token="${NOTEBOOK_TOKEN:-$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')}"
echo "JupyterLab with TensorFlow $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu"))'):"
echo "    http://127.0.0.1:$port/lab?token=$token"
# Jupyter refuses to run as root unless told; the machines of this project log in as root.
as_root=()
if [ "$(id -u)" = 0 ]; then as_root=(--allow-root); fi
exec "$venv/bin/jupyter" lab --no-browser --ip=127.0.0.1 --port="$port" --ServerApp.port_retries=0 \
  --IdentityProvider.token="$token" --ServerApp.root_dir="$PWD" "${as_root[@]}"
