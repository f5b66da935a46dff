# Entry points for people and CI. Heavy, shared caches (the Python virtualenv and the Go-built
# tools) live outside the repository under $(CACHE), keyed by what they were built from, so a
# fresh clone reuses them and a changed pin rebuilds them.
SHELL := /bin/bash
CACHE ?= $(or $(MLPLATFORM_CACHE),$(HOME)/.cache/mlplatform)
REQ_HASH := $(shell cat requirements.txt trainer/requirements.txt | sha256sum | cut -c1-12)
VENV_DIR := $(CACHE)/venv-$(REQ_HASH)
PY := .venv/bin/python
# make lint's ruff, pinned in tools/lint-requirements.txt, in a small virtualenv of its own.
LINT_HASH := $(shell sha256sum tools/lint-requirements.txt | cut -c1-12)
LINT_VENV := $(CACHE)/lint-venv-$(LINT_HASH)

.PHONY: system help venv lint lint-venv test-system test test-unit test-hub test-trainer test-engine test-images test-scan \
	test-controlplane test-e2e test-realnode test-deps up down render bench-trainer bench-hub rehearse-upgrade notebook tools tools-node \
	docs images images-lock images-list

# Every target documented with a `## ` line right above it; `make help` lists them.

# The Debian packages the project needs from the machine (tools/system/packages.txt says which and
# why): installs what is missing, and is a quiet no-op when nothing is. Every target below that
# builds, runs the cluster or runs tests depends on it.
## install the Debian packages of tools/system/packages.txt that are missing
system:
	@tools/system/setup.sh

# `make help`: each `## ` line, beside the name of the target on the line below it.
## list the targets, one line each
help:
	@awk '/^## / { doc = substr($$0, 4); next } doc != "" && /^[a-z][a-z0-9-]*:/ { sub(/:.*/, ""); printf "  %-18s %s\n", $$0, doc } { doc = "" }' $(firstword $(MAKEFILE_LIST))

# .venv is a link to the cached virtualenv for the current pins. Built under a lock: two runs
# (two clones, CI beside a person) must not remove and rebuild it under each other.
## link .venv to the cached virtualenv of requirements.txt (built when missing)
venv: .venv/.installed
.venv/.installed: requirements.txt trainer/requirements.txt
	@mkdir -p $(CACHE) && flock $(VENV_DIR).lock sh -c '\
	  [ -f $(VENV_DIR)/.installed ] || { \
	    rm -rf $(VENV_DIR) && python3 -m venv $(VENV_DIR) && \
	    $(VENV_DIR)/bin/pip install --quiet --upgrade pip && \
	    $(VENV_DIR)/bin/pip install --quiet -r requirements.txt && \
	    touch $(VENV_DIR)/.installed; }'
	@ln -sfn $(VENV_DIR) .venv

# ruff over the Python code (rules in ruff.toml) and shellcheck over every tracked shell script
# (*.sh, and files whose first line runs sh or bash).
# The directory is named by the pins' hash, so it is built once per pin set: a fresh clone's newer
# lockfile must not rebuild it (nor two clones' runs rebuild it under each other).
lint-venv:
	@mkdir -p $(CACHE) && flock $(LINT_VENV).lock sh -c '\
	  [ -f $(LINT_VENV)/.installed ] || { \
	    rm -rf $(LINT_VENV) && python3 -m venv $(LINT_VENV) && \
	    $(LINT_VENV)/bin/pip install --quiet -r tools/lint-requirements.txt && \
	    touch $(LINT_VENV)/.installed; }'
SHELL_SCRIPTS = $$( (git ls-files '*.sh'; git ls-files | while read -r f; do \
	  [ -f "$$f" ] && head -n1 "$$f" | grep -qE '^\#!.*\b(ba|da)?sh\b' && echo "$$f"; done) | sort -u)
## ruff and shellcheck (run by make test before the tests)
lint: system lint-venv
	$(LINT_VENV)/bin/ruff check --quiet .
	shellcheck -x $(SHELL_SCRIPTS)

# Every test. It first builds whatever the tests need and is missing (the Go-built tools, the
# browser and npm packages of the hub tests, the real nodes' runtime, the images), with warm
# caches in seconds, then lints. tests/run_tiers.sh runs the real-node tier beside the other tiers
# (MLPLATFORM_TEST_PARALLEL=0: one after the other), each session's slowest tests in its summary.
## lint, then every test (builds what the tests need first)
test: system venv tools tools-node test-deps images lint
	PY=$(PY) tests/run_tiers.sh

# One target per test tier (a directory of tests/ and its marker in pytest.ini), each with what
# that tier needs; docs/testing.md says what each proves.
## unit tier: config, components under mocks, schemas, pure logic (no engine, cluster or processes)
test-unit: venv
	tools/build.sh kueue-manifests
	$(PY) -m pytest tests/unit
## system tier: tools/system/setup.sh in a fresh Debian bookworm root, and on this machine (root)
test-system: system venv
	$(PY) -m pytest tests/system
## hub tier: the hub's config in the real JupyterHub, the real hub and proxy in Chromium
test-hub: system venv test-deps
	$(PY) -m pytest tests/hub
## trainer tier: the real trainer as processes on loopback
test-trainer: venv
	$(PY) -m pytest tests/trainer
## engine tier: the real Pulumi CLI over the real program
test-engine: system venv
	tools/build.sh pulumi
	$(PY) -m pytest tests/engine
## images tier: each image's main process in a real container (root)
test-images: system venv images
	$(PY) -m pytest tests/images
## scan tier: kube-score over every rendered object
test-scan: system venv
	tools/build.sh scan
	$(PY) -m pytest tests/scan
## controlplane tier: the local control plane alone through bin/cluster
test-controlplane: system venv
	tools/build.sh kube
	$(PY) -m pytest tests/controlplane
## e2e tier: make up and make down of the simulated stack on a private cluster
test-e2e: system venv
	tools/build.sh pulumi kube operator kueue
	$(PY) -m pytest tests/e2e
## realnode tier: real nodes and the dev stack on them (root; the longest)
test-realnode: system venv tools tools-node test-deps images
	$(PY) -m pytest tests/realnode

# The config reference in Pulumi.yaml and docs/configuration.md, from the settings' field descriptions.
## regenerate the config reference (docs/configuration.md, Pulumi.yaml)
docs: venv
	$(PY) -m stacks.reference --write

# The Pulumi CLI, its plugins, the local control plane, the training operator, Kueue and kube-score
# (the manifest scan of tests/scan), from Go modules.
## build the Go tools: Pulumi and its plugins, the control plane, the operator, Kueue, kube-score
tools: system
	tools/build.sh

# What real nodes run (kubelet, kube-proxy, containerd, runc, CNI plugins, crictl, CoreDNS, pause,
# kube-router for NetworkPolicy):
# `bin/cluster up --real`, `MLPLATFORM_NODES=real make up` and tests/realnode need them.
## build what real nodes run (kubelet, containerd, runc, CNI, CoreDNS, kube-router, ...)
tools-node: system
	tools/build.sh node

## install the hub tests' npm packages
test-deps: system
	tests/hub/setup.sh

# The dev stack's manifests, written by the real engine instead of applied (RENDER_DIR).
RENDER_DIR ?= .local/render
## write the dev stack's manifests to RENDER_DIR instead of applying them
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
## start the local cluster and deploy the stack (STACK=dev; STACK=kwok on simulated nodes)
up: system venv images
	tools/build.sh pulumi kube operator kueue $$(if [ "$(MLPLATFORM_NODES)" = real ] || \
	  [ "$$($(PY) -m stacks.local_nodes --provider $(STACK_CONFIG))" = local ]; then echo node; fi)
	MLPLATFORM_STACK_CONFIG=$(STACK_CONFIG) bin/cluster up
	MLPLATFORM_STACK_CONFIG=$(STACK_CONFIG) bin/pulumi stack select --create $(STACK) --non-interactive
	bin/pulumi up $(STACK_FLAGS) --yes --non-interactive
	@# On kwok's simulated nodes no container runs: the operator runs here (a `local` stack's runs in the cluster).
	@if [ "$$($(PY) -m stacks.local_nodes --provider $(STACK_CONFIG))" != local ]; then bin/training-operator start; fi

# The objects live in the cluster's etcd, which `bin/cluster down` removes: when the cluster is
# not running, destroy only forgets them (the provider's deleteUnreachable) instead of failing.
## destroy the stack and remove the local cluster
down:
	bin/training-operator stop
	@if [ "$$(bin/cluster status)" != running ]; then export PULUMI_K8S_DELETE_UNREACHABLE=true; fi; \
	if bin/pulumi stack --stack $(STACK) --non-interactive >/dev/null 2>&1; then \
	  bin/pulumi destroy $(STACK_FLAGS) --yes --non-interactive; \
	fi
	bin/cluster down

# The dev stack's deploy on real pods, Pulumi beside kubectl, each on a fresh private cluster
# (bench/bench_deploy.py); STACK=kwok runs it on kwok's simulated nodes instead.
.PHONY: bench-deploy
## time the dev stack's deploy, Pulumi beside kubectl (docs/benchmarks.md)
bench-deploy: system venv images
	tools/build.sh pulumi kube operator kueue $(if $(filter kwok,$(STACK)),,node)
	PYTHONPATH=tests $(PY) -m bench.bench_deploy --stack $(STACK) --out .local/bench-deploy

# 30 users' GPU notebooks and 10 training jobs competing for 50 GPUs through Kueue, on a private
# kwok cluster with Kueue's manager as a local process (bench/bench_kueue.py, bench/kueue-scale.yaml;
# needs root for the manager's mount namespace); SEED, USERS, JOBS change it, QUEUES=FILE replaces
# the queues (bench/kueue-queues-split.yaml, with NOTEBOOK_QUEUE=notebooks). The figure and its
# JSON are written to docs/benchmarks/kueue/.
.PHONY: bench-kueue
## 30 notebooks and 10 jobs on 50 simulated GPUs through Kueue: admission order, waits, utilization (docs/benchmarks.md)
bench-kueue: system venv
	tools/build.sh kube kueue
	$(PY) -m bench.bench_kueue --out .local/bench-kueue --publish docs/benchmarks/kueue \
	  $(if $(SEED),--seed $(SEED)) $(if $(USERS),--users $(USERS)) $(if $(JOBS),--jobs $(JOBS)) \
	  $(if $(QUEUES),--queues $(QUEUES)) $(if $(NOTEBOOK_QUEUE),--notebook-queue $(NOTEBOOK_QUEUE))

# A class of 20 pressing Start at once on a fresh private cluster with real nodes and the real-node
# tests' stack (bench/bench_hub.py, tests/realnode/hub_storm.py); USERS, CONCURRENT, ACTIVE change it.
.PHONY: bench-hub
## 20 users press Start at once: spawn times, /hub/health, refusals (docs/benchmarks.md)
bench-hub: system venv images
	tools/build.sh pulumi kube operator kueue node
	PYTHONPATH=tests:tests/realnode $(PY) -m bench.bench_hub --out .local/bench-hub \
	  $(if $(USERS),--users $(USERS)) $(if $(CONCURRENT),--concurrent $(CONCURRENT)) $(if $(ACTIVE),--active $(ACTIVE))

# One user pressing Start again and again on a fresh private cluster with real nodes and the
# real-node tests' stack: Start to JupyterLab through the proxy and rendered in Chromium, and where
# the time goes (bench/bench_spawn.py); SPAWNS=n changes how many are timed after the first.
.PHONY: bench-spawn
## one user's server, Start to JupyterLab, median and p95 over repeated spawns (docs/benchmarks.md)
bench-spawn: system venv images test-deps
	tools/build.sh pulumi kube operator kueue node
	PYTHONPATH=tests:tests/realnode $(PY) -m bench.bench_spawn --out .local/bench-spawn $(if $(SPAWNS),--spawns $(SPAWNS))

# A new two-node cluster's `bin/cluster up --real`, with every node importing every image and on the
# machine's image store, alternating (bench/bench_cluster.py); RUNS=n changes how many of each.
.PHONY: bench-cluster
## time a new cluster's start, with the machine's image store and without (docs/benchmarks.md)
bench-cluster: system venv images
	tools/build.sh kube node
	PYTHONPATH=tests:tests/realnode $(PY) -m bench.bench_cluster --out .local/bench-cluster $(if $(RUNS),--runs $(RUNS))

# An upgrade rehearsed with a team's data on a private cluster with real nodes: the dev stack from
# the commit UPGRADE_FROM_REF of versions.env (FROM=<ref> for another), seeded with users, tokens,
# a running server, files and a finished TFJob, then `pulumi up` from this working tree
# (tests/realnode/test_upgrade_rehearsal.py; docs/data.md#rehearsing-an-upgrade).
.PHONY: rehearse-upgrade
## deploy the stack from an earlier commit, seed it, upgrade it to this tree, check nothing was lost
rehearse-upgrade: system venv tools tools-node images
	$(if $(FROM),MLPLATFORM_UPGRADE_FROM=$(FROM)) $(PY) -m pytest tests/realnode/test_upgrade_rehearsal.py -rA

# --- images (images/) ---
# The platform's images, built without Docker or a registry into $(CACHE)/images as OCI archives
# named mlplatform/<name>:<content hash>; a warm run only looks the hashes up. IMAGES picks some
# (default: all). The builder is the standard library plus mmdebstrap (the venv only makes the MNIST sample). The
# operator image packs the manager that `tools/build.sh operator` builds, the kueue image the one
# of `tools/build.sh kueue`, the trainer image the MNIST sample of `tools/build.sh data` (lookups
# when built).
IMAGES ?=
OPERATOR_IMAGE_WANTED = $(if $(IMAGES),$(filter operator,$(IMAGES)),operator)
KUEUE_IMAGE_WANTED = $(if $(IMAGES),$(filter kueue,$(IMAGES)),kueue)
TRAINER_IMAGE_WANTED = $(if $(IMAGES),$(filter trainer,$(IMAGES)),trainer)
## build the platform's images that the cache lacks (IMAGES="hub proxy" for some)
images: system venv
	$(if $(OPERATOR_IMAGE_WANTED),tools/build.sh operator)
	$(if $(KUEUE_IMAGE_WANTED),tools/build.sh kueue)
	$(if $(TRAINER_IMAGE_WANTED),tools/build.sh data)
	MLPLATFORM_CACHE=$(CACHE) python3 -m images.build build $(IMAGES)

## list the images: reference, sizes, measured build time
images-list:
	@MLPLATFORM_CACHE=$(CACHE) python3 -m images.build list

# Re-freeze the transitive pins of one image (IMAGE=hub) after a pin in the requirements changed.
## re-freeze one image's transitive pins (IMAGE=hub)
images-lock:
	MLPLATFORM_CACHE=$(CACHE) python3 -m images.build lock $(IMAGE)

# --- trainer (trainer/) ---
## time the trainer: one process against master + 2 workers + PS (docs/benchmarks.md)
bench-trainer: venv
	$(PY) -m trainer.bench --out .local/bench-trainer

# JupyterLab on 127.0.0.1 with the trainer's TensorFlow, in its own cached virtualenv (NOTEBOOK_PORT=8888).
## JupyterLab on 127.0.0.1 with the trainer's TensorFlow
notebook:
	@CACHE="$(CACHE)" trainer/notebook.sh
