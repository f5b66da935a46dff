"""Where the Go-built tools live, as tools/versions.sh lays the cache out, for Python.

tools/versions.sh is the one definition of the layout (tools/build.sh builds into it, the bin/
scripts source it); Python asks bash for it here rather than writing the paths a second time.
Standard library only: the cluster manager and the image builder use it before any virtualenv.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

VERSIONS_SH = Path(__file__).resolve().with_name("versions.sh")

# Each variable as NAME=value, one a line: the tool directories (*_DIR), the versions they are
# named after (*_VERSION) and the cache root.
_PRINT = (
    'for _name in $(compgen -v); do case "$_name" in '
    '*_DIR|*_VERSION|MLPLATFORM_TOOLS) printf "%s=%s\\n" "$_name" "${!_name}";; esac; done'
)


def tools_layout(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every tool's directory (`KUBERNETES_DIR`, ...) and version (`KUBERNETES_VERSION`, ...) as
    tools/versions.sh has them, under the cache that MLPLATFORM_CACHE in `environ` names."""
    out = subprocess.run(["bash", "-c", f'. "{VERSIONS_SH}" && {_PRINT}'], check=True, capture_output=True,
                         text=True, env=dict(os.environ if environ is None else environ))
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
