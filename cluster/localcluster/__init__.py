"""The local cluster's real nodes: containerd and a kubelet per node, in network namespaces of
their own, registered with the local control plane that `bin/cluster up` starts.

One module per part (network, cgroups, containerd, kubelet, the API forwarder), each a class
with the same four methods, so a reader finds how a part is started in one file and a test can
drive a part alone:

    start()  start it (its state directory and configuration written first)
    ready()  True once it serves
    alive()  its process runs (False for parts without one once they exist)
    stop()   stop it and remove everything it made on the machine

`node.Node` runs the parts in order; `__main__` is the command line that `bin/cluster` calls.
Standard library only: it runs with the system's python3, before any virtualenv exists.
"""
