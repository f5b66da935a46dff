# Entry points for people and CI. Heavy, shared caches (the Python virtualenv and the Go-built
# tools) live outside the repository under $(CACHE), keyed by what they were built from, so a
# fresh clone reuses them and a changed pin rebuilds them.
SHELL := /bin/bash
CACHE ?= $(or $(MLPLATFORM_CACHE),$(HOME)/.cache/mlplatform)
REQ_HASH := $(shell cat requirements.txt trainer/requirements.txt | sha256sum | cut -c1-12)
VENV_DIR := $(CACHE)/venv-$(REQ_HASH)
PY := .venv/bin/python

.PHONY: venv test test-unit up down render bench-trainer notebook tools

# .venv is a link to the cached virtualenv for the current pins.
venv: .venv/.installed
.venv/.installed: requirements.txt trainer/requirements.txt
	@if [ ! -f $(VENV_DIR)/.installed ]; then \
	  rm -rf $(VENV_DIR) && python3 -m venv $(VENV_DIR) && \
	  $(VENV_DIR)/bin/pip install --quiet --upgrade pip && \
	  $(VENV_DIR)/bin/pip install --quiet -r requirements.txt && \
	  touch $(VENV_DIR)/.installed; \
	fi
	@ln -sfn $(VENV_DIR) .venv

test: venv
	$(PY) -m pytest tests

test-unit: venv
	$(PY) -m pytest tests/unit

# --- trainer (trainer/) ---
bench-trainer: venv
	$(PY) -m trainer.bench --out .local/bench-trainer

# JupyterLab on 127.0.0.1 with the trainer's TensorFlow, in its own cached virtualenv (NOTEBOOK_PORT=8888).
notebook:
	@CACHE="$(CACHE)" trainer/notebook.sh
