"""The user data the last deployment kept, read back before anything that holds it is touched.

The program's own stack outputs are the record (stacks/retention.py): a StackReference to this
very stack reads the last deployment's `keptData` output, during preview as during update (on the
file backend as on Pulumi Cloud, checked by tests/e2e/test_make_up.py). `checked` resolves once
the record is compared with the config, and fails with the config's own message otherwise; the
namespaces that hold the data take their names from it, so nothing in them is registered first.
"""

from __future__ import annotations

from typing import Any

import pulumi

from stacks import retention
from stacks.config import ConfigError, StackSettings


def _compare(previous: Any, settings: StackSettings) -> bool:
    found = retention.problems(previous, settings)
    if found:
        raise ConfigError("\n".join(found))
    return True


def checked(settings: StackSettings) -> pulumi.Output[bool]:
    """True once this config keeps what the last deployment kept; the deployment's new record
    is exported as `keptData`."""
    this_stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    previous = pulumi.StackReference(this_stack).get_output(retention.OUTPUT)
    pulumi.export(retention.OUTPUT, retention.kept_data(settings))
    return previous.apply(lambda record: _compare(record, settings))
