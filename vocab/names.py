"""Label keys, annotations and resource names the platform's objects carry and select by."""

from __future__ import annotations

# The app.kubernetes.io/part-of of every object the platform makes.
PART_OF = "mlplatform"

# Every node of a pool carries this label (kwok and aks set it; on an existing cluster the pool's
# own labels select it), so workloads select a pool the same way on every backend.
POOL_LABEL = "mlplatform.dev/pool"

# Pulumi's Node type cannot set status, so a simulated node carries its capacity here; the local
# cluster's kwok node stage copies it into status.capacity and status.allocatable.
CAPACITY_ANNOTATION = "mlplatform.dev/capacity"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

GPU_RESOURCE = "nvidia.com/gpu"
# What NVIDIA's device plugin advertises time-sliced GPUs as with `renameByDefault`, so that a pod
# asks knowingly for a share of a GPU rather than a whole one.
SHARED_GPU_RESOURCE = "nvidia.com/gpu.shared"
# The node label by which NVIDIA's device plugin (its config-manager) picks a named config.
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"
