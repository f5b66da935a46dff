"""The local cluster: `localcluster/` is its manager (run as `python3 -m cluster.localcluster`,
which `bin/cluster` does), beside the files it reads (local.env, kwokctl.yaml, stages/)."""
