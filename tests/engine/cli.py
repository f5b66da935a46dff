"""Running the real Pulumi CLI of a project copy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def pulumi(project: Path, *args: str, check: bool = True, timeout: int = 600,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """bin/pulumi with none of the caller's PULUMI_* settings, and `env` added."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}, **(env or {})}
    result = subprocess.run(
        [str(project / "bin" / "pulumi"), *args, "--non-interactive"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"pulumi {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
