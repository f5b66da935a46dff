# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by its callers
# Pinned versions of the Go-built tools, and where they live. Sourced (not run) by
# tools/build.sh and bin/pulumi, so the pins and the cache layout are written down once.
#
# Every tool is built into its own directory under $MLPLATFORM_TOOLS, named after the tool
# and its version; a directory counts as built only when its .stamp file exists and records
# the same recipe (see tools/build.sh).

# Pulumi CLI and engine (github.com/pulumi/pulumi/pkg/v3 + sdk/v3).
PULUMI_VERSION=v3.274.1
# Kubernetes provider: the module proxy serves release v4.25.0 only as this pseudo-version.
PULUMI_KUBERNETES_VERSION=4.25.0
PULUMI_KUBERNETES_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
# Control plane for local clusters.
KUBERNETES_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
# Kubeflow training operator, v1 line (the last one that reconciles TFJobs).
TRAINING_OPERATOR_VERSION=v1.9.4

MLPLATFORM_TOOLS="${MLPLATFORM_CACHE:-$HOME/.cache/mlplatform}/tools"

# One directory per tool and version: "<tool>-<version>", binaries in its bin/.
# The CLI and its Python language host (built from tools/go/pulumi) share one bin/.
PULUMI_DIR="$MLPLATFORM_TOOLS/pulumi-$PULUMI_VERSION"
PULUMI_KUBERNETES_DIR="$MLPLATFORM_TOOLS/pulumi-resource-kubernetes-v$PULUMI_KUBERNETES_VERSION"
KUBERNETES_DIR="$MLPLATFORM_TOOLS/kubernetes-$KUBERNETES_VERSION"
ETCD_DIR="$MLPLATFORM_TOOLS/etcd-$ETCD_VERSION"
KWOK_DIR="$MLPLATFORM_TOOLS/kwok-$KWOK_VERSION"
TRAINING_OPERATOR_DIR="$MLPLATFORM_TOOLS/training-operator-$TRAINING_OPERATOR_VERSION"
