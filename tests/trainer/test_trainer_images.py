"""The trainer images (Docker is not available here, so they are read, not built): pinned bases, the pins of
trainer/requirements.txt, a non-root user and ``python -m trainer`` as entry point."""

import json
import re
from pathlib import Path

import pytest

TRAINER = Path(__file__).resolve().parents[2] / "trainer"


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==") for line in lines if line)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def only(dockerfile: Path, instruction: str) -> str:
    values = [args for name, args in instructions(dockerfile) if name == instruction]
    assert len(values) == 1, f"{dockerfile.name}: expected one {instruction}, got {values}"
    return values[0]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_image_runs_the_trainer_package_as_a_non_root_user(name):
    dockerfile = TRAINER / name
    assert json.loads(only(dockerfile, "ENTRYPOINT")) == ["python", "-m", "trainer"]
    assert only(dockerfile, "USER") not in ("root", "0")
    assert "COPY . /app/trainer/" in [f"COPY {args}" for cmd, args in instructions(dockerfile) if cmd == "COPY"]
    assert only(dockerfile, "WORKDIR") == "/app", "python -m trainer must find the package in the working dir"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_base_image_is_pinned_by_tag(name):
    image = only(TRAINER / name, "FROM")
    assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image!r} needs an explicit tag"
    assert not image.endswith(":latest")


def test_cpu_image_installs_exactly_the_trainer_requirements():
    dockerfile = TRAINER / "Dockerfile"
    assert "requirements.txt /tmp/requirements.txt" in [args for cmd, args in instructions(dockerfile) if cmd == "COPY"]
    runs = " ".join(args for cmd, args in instructions(dockerfile) if cmd == "RUN")
    assert "pip install -r /tmp/requirements.txt" in runs


def test_gpu_image_matches_the_pinned_tensorflow_and_installs_the_other_pins():
    tensorflow = pins(TRAINER / "requirements.txt")["tensorflow-cpu"]
    assert only(TRAINER / "Dockerfile.gpu", "FROM") == f"tensorflow/tensorflow:{tensorflow}-gpu"
    runs = " ".join(args for cmd, args in instructions(TRAINER / "Dockerfile.gpu") if cmd == "RUN")
    assert f"assert tf.__version__ == '{tensorflow}'" in runs
    assert "grep -v '^tensorflow-cpu==' /tmp/requirements.txt > /tmp/requirements-gpu.txt" in runs
    assert "pip install -r /tmp/requirements-gpu.txt" in runs


def test_build_context_keeps_the_package_and_its_requirements():
    ignored = [line.strip() for line in (TRAINER / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("requirements.txt", "__main__.py", "main.py", "train.py"):
        assert not any(Path(needed).match(pattern) for pattern in ignored), f"{needed} is excluded"


def test_notebook_requirements_pin_jupyterlab():
    notebook_pins = pins(TRAINER / "notebook-requirements.txt")
    assert list(notebook_pins) == ["jupyterlab"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", notebook_pins["jupyterlab"])
