"""The local cluster: its control plane (kwokctl's binary runtime) and, opt-in, real nodes (containerd
and a kubelet per node, in network namespaces of their own). `bin/cluster` runs `__main__`.

One module per part (control plane, network, cgroups, containerd, kubelet, the API forwarder, ...),
so a reader finds how a part is started in one file and a test can drive a part alone. Most parts
are a class with the same four methods:

    start()  start it (its state directory and configuration written first)
    ready()  True once it serves
    alive()  its process runs (False for parts without one once they exist)
    stop()   stop it and remove everything it made on the machine

Four are not: the API forwarder (apiproxy.py) and the API server's egress proxy (egress.py) are
programs that a `process.Daemon` runs (start, alive and stop, and a wait for them to listen in
place of ready); DNS (dns.py) is CoreDNS's manifests applied through the API, with a `ready`
check; images.py imports image archives into a node's containerd.

`controlplane.ControlPlane` is the control plane, `nodes.RealNodes` the real nodes and what they
share, `node.Node` one node's parts in order; `__main__` runs them in order.
`trainingoperator.TrainingOperator` is the simulated mode's training operator, a part with a
command line of its own (`bin/training-operator`): `make up` starts it once the stack is deployed. Standard library
only: it runs with the system's python3, before any virtualenv exists.
"""
