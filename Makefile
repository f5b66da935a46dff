# Entry points for people and CI. Heavy, shared caches (the Python virtualenv and the Go-built
# tools) live outside the repository under $(CACHE), keyed by what they were built from, so a
# fresh clone reuses them and a changed pin rebuilds them.
SHELL := /bin/bash
CACHE ?= $(or $(MLPLATFORM_CACHE),$(HOME)/.cache/mlplatform)
REQ_HASH := $(shell cat requirements.txt trainer/requirements.txt | sha256sum | cut -c1-12)
VENV_DIR := $(CACHE)/venv-$(REQ_HASH)
PY := .venv/bin/python

.PHONY: system venv test test-unit test-deps up down render bench-trainer notebook tools tools-node docs images images-lock images-list

# The Debian packages the project needs from the machine (tools/system/packages.txt says which and
# why): installs what is missing, and is a quiet no-op when nothing is. Every target below that
# builds, runs the cluster or runs tests depends on it.
system:
	@tools/system/setup.sh

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

# Every test. It first builds whatever the tests need and is missing (the Go-built tools, the
# browser and npm packages of the hub tests, the real nodes' runtime, the images); with warm
# caches that takes seconds.
test: system venv tools tools-node test-deps images
	$(PY) -m pytest tests

# The fast tests: config, components under mocks, schemas (no engine, cluster or processes).
test-unit: venv
	$(PY) -m pytest tests/unit

# The config reference in Pulumi.yaml and the README, from the settings' field descriptions.
docs: venv
	$(PY) -m stacks.reference --write

# The Pulumi CLI, its plugins, the local control plane, the training operator and kube-score (the
# manifest scanner of tests/scan), from Go modules.
tools: system
	tools/build.sh

# What real nodes run (kubelet, kube-proxy, containerd, runc, CNI plugins, crictl, CoreDNS, pause,
# kube-router for NetworkPolicy):
# `bin/cluster up --real`, `MLPLATFORM_NODES=real make up` and tests/realnode need them.
tools-node: system
	tools/build.sh node

test-deps: system
	tests/hub/setup.sh

# The dev stack's manifests, written by the real engine instead of applied (RENDER_DIR).
RENDER_DIR ?= .local/render
render: system venv
	tools/build.sh pulumi
	bin/render $(RENDER_DIR)

# --- local cluster and the dev stack (bin/cluster, cluster/) ---
# STACK picks the stack; CONFIG_FILE, when set, is its config file instead of Pulumi.$(STACK).yaml
# (the e2e tests and the benchmark keep theirs outside the repository). The cluster's name,
# directory and kubeconfig follow MLPLATFORM_CLUSTER_NAME/_DIR and MLPLATFORM_KUBECONFIG.
STACK ?= dev
STACK_FLAGS = --stack $(STACK) $(if $(CONFIG_FILE),--config-file $(CONFIG_FILE))
STACK_CONFIG = $(or $(CONFIG_FILE),Pulumi.$(STACK).yaml)

# A stack whose cluster.provider is local (the dev stack) gets real nodes (kubelet + containerd, one
# per pool); MLPLATFORM_NODES=real adds them beside kwok's to any other stack (STACK=kwok).
up: system venv images
	tools/build.sh pulumi kube operator $$(if [ "$(MLPLATFORM_NODES)" = real ] || \
	  [ "$$($(PY) -m stacks.local_nodes --provider $(STACK_CONFIG))" = local ]; then echo node; fi)
	MLPLATFORM_STACK_CONFIG=$(STACK_CONFIG) bin/cluster up
	bin/pulumi stack select --create $(STACK) --non-interactive
	bin/pulumi up $(STACK_FLAGS) --yes --non-interactive
	@# On kwok's simulated nodes no container runs: the operator runs here (a `local` stack's runs in the cluster).
	@if [ "$$($(PY) -m stacks.local_nodes --provider $(STACK_CONFIG))" != local ]; then bin/training-operator start; fi

# The objects live in the cluster's etcd, which `bin/cluster down` removes: when the cluster is
# not running, destroy only forgets them (the provider's deleteUnreachable) instead of failing.
down:
	bin/training-operator stop
	@if [ "$$(bin/cluster status)" != running ]; then export PULUMI_K8S_DELETE_UNREACHABLE=true; fi; \
	if bin/pulumi stack --stack $(STACK) --non-interactive >/dev/null 2>&1; then \
	  bin/pulumi destroy $(STACK_FLAGS) --yes --non-interactive; \
	fi
	bin/cluster down

# The dev stack's deploy on real pods, Pulumi beside kubectl, each on a fresh private cluster
# (tests/e2e/bench_deploy.py); STACK=kwok runs it on kwok's simulated nodes instead.
.PHONY: bench-deploy
bench-deploy: system venv images
	tools/build.sh pulumi kube operator $(if $(filter kwok,$(STACK)),,node)
	$(PY) tests/e2e/bench_deploy.py --stack $(STACK) --out .local/bench-deploy

# --- images (images/) ---
# The platform's images, built without Docker or a registry into $(CACHE)/images as OCI archives
# named mlplatform/<name>:<content hash>; a warm run only looks the hashes up. IMAGES picks some
# (default: all). The builder is the standard library plus mmdebstrap (the venv only makes the MNIST sample). The
# operator image packs the manager that `tools/build.sh operator` builds, the trainer image the
# MNIST sample of `tools/build.sh data` (lookups when built).
IMAGES ?=
OPERATOR_IMAGE_WANTED = $(if $(IMAGES),$(filter operator,$(IMAGES)),operator)
TRAINER_IMAGE_WANTED = $(if $(IMAGES),$(filter trainer,$(IMAGES)),trainer)
images: system venv
	$(if $(OPERATOR_IMAGE_WANTED),tools/build.sh operator)
	$(if $(TRAINER_IMAGE_WANTED),tools/build.sh data)
	MLPLATFORM_CACHE=$(CACHE) python3 -m images.build build $(IMAGES)

images-list:
	@MLPLATFORM_CACHE=$(CACHE) python3 -m images.build list

# Re-freeze the transitive pins of one image (IMAGE=hub) after a pin in the requirements changed.
images-lock:
	MLPLATFORM_CACHE=$(CACHE) python3 -m images.build lock $(IMAGE)

# --- trainer (trainer/) ---
bench-trainer: venv
	$(PY) -m trainer.bench --out .local/bench-trainer

# JupyterLab on 127.0.0.1 with the trainer's TensorFlow, in its own cached virtualenv (NOTEBOOK_PORT=8888).
notebook:
	@CACHE="$(CACHE)" trainer/notebook.sh
