"""The names mlplatform shares between its layers, with no Pulumi in them.

Imports point one way: `__main__` -> `components` -> `stacks` -> `vocab`. The settings
(`stacks/`), the components, the cluster manager's callers, scripts and tests all speak these
names, so they live below every one of them and import nothing of Pulumi, `components` or
`stacks` (tests/unit/test_layers.py keeps it so).

    tfjob_api  the TFJob API: group/version/kind, replica types, policies, port, operator names
    versions   every upstream version and image the platform deploys (versions.env's pins)
    names      label keys, annotations and resource names of the platform's own
"""
