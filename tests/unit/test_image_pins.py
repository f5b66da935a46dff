"""One version per package: the local image recipes, their frozen locks, the trainer Dockerfiles,
the requirements files and the stack's image defaults all agree.

Nothing is built here; tests/images runs the images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vocab import versions
from images import build, pins, recipe

ROOT = Path(__file__).resolve().parents[2]
IMAGES = recipe.names()

# What the upstream images the stacks deploy ship (Zero to JupyterHub 4.4.0's k8s-hub image and
# its chart): the local hub image must install the same, since the dev stack runs it instead.
Z2JH_HUB_PACKAGES = {
    "4.4.0": {"jupyterhub": "5.5.0", "jupyterhub-kubespawner": "7.0.0", "oauthenticator": "17.4.0",
              "jupyterhub-idle-culler": "1.4.0"},
}


def tag_of(image: str) -> str:
    return image.rsplit(":", 1)[1]


def test_every_image_has_a_recipe():
    assert IMAGES == ["hub", "kueue", "notebook", "operator", "proxy", "trainer"]


@pytest.mark.parametrize("name", [n for n in IMAGES if recipe.load(n).python or recipe.load(n).npm])
def test_lock_pins_the_top_level_packages_as_the_project_does(name):
    image = recipe.load(name)
    assert image.pins, f"{name}: no pinned packages"
    build.check_pins(image)  # raises BuildError naming the package otherwise
    if image.python:
        frozen = pins.read_requirements(image.directory / image.python.lock)
        project = pins.python_pins()
        shared = {p: v for p, v in frozen.items() if p in project}
        assert shared == {p: project[p] for p in shared}, f"{name}: the lock disagrees with the requirements files"


@pytest.mark.parametrize("name", [n for n in IMAGES if recipe.load(n).python])
def test_lock_pins_every_line_exactly(name):
    image = recipe.load(name)
    lines = [line for line in (image.directory / image.python.lock).read_text().splitlines()
             if line and not line.startswith("#")]
    loose = [line for line in lines if not re.fullmatch(r"[A-Za-z0-9._-]+(\[[^\]]*\])?==[^\s]+", line)]
    assert not loose, f"{name}: lines that are not name==version: {loose}"


@pytest.mark.parametrize(("name", "tool", "tool_dir", "upstream_image"), [
    ("operator", "TRAINING_OPERATOR_DIR", f"training-operator-{versions.TRAINING_OPERATOR_VERSION}",
     versions.TRAINING_OPERATOR_IMAGE),
    ("kueue", "KUEUE_DIR", f"kueue-{versions.KUEUE_VERSION}", versions.KUEUE_IMAGE),
])
def test_controller_image_is_the_pinned_manager_build(name: str, tool: str, tool_dir: str, upstream_image: str) -> None:
    # The manager comes from the tools cache, where tools/build.sh builds the pinned version into
    # a directory named after it; the stack's upstream default is that version's image.
    image = recipe.load(name)
    (manager,) = image.files
    assert manager.tool == tool and manager.dst == "/manager"
    assert recipe.tool_dir(manager.tool).name == tool_dir
    assert recipe.STANDS_FOR[upstream_image.rsplit(":", 1)[0]] == name
    assert image.base is None and image.config.user == "65532:65532"


def test_hub_image_installs_what_the_upstream_hub_image_ships():
    upstream_tag = tag_of(versions.JUPYTERHUB_HUB_IMAGE)
    hub = recipe.load("hub").pins
    for package, version in Z2JH_HUB_PACKAGES[upstream_tag].items():
        assert hub[package] == version, f"hub image {package}=={hub[package]}, k8s-hub:{upstream_tag} ships {version}"
    assert set(hub) >= {"jupyterhub-nativeauthenticator"}


def test_notebook_runs_the_hubs_jupyterhub_and_the_trainers_tensorflow():
    notebook, hub, trainer = (recipe.load(n).pins for n in ("notebook", "hub", "trainer"))
    assert notebook["jupyterhub"] == hub["jupyterhub"]
    assert notebook["tensorflow-cpu"] == trainer["tensorflow-cpu"]
    assert notebook["jupyterlab"] == pins.read_requirements(ROOT / "trainer/notebook-requirements.txt")["jupyterlab"]


def test_trainer_image_installs_exactly_what_the_trainer_dockerfiles_install():
    dockerfile_pins = pins.read_requirements(ROOT / "trainer/requirements.txt")
    assert recipe.load("trainer").pins == dockerfile_pins
    assert "pip install -r /tmp/requirements.txt" in (ROOT / "trainer/Dockerfile").read_text()
    gpu = (ROOT / "trainer/Dockerfile.gpu").read_text()
    assert f"FROM tensorflow/tensorflow:{dockerfile_pins['tensorflow-cpu']}-gpu" in gpu


def test_trainer_image_runs_the_python_of_the_dockerfile():
    # trainer/Dockerfile is FROM python:3.11-slim-bookworm; the local image is Debian bookworm's
    # python3, which is 3.11 too.
    base = re.search(r"^FROM python:(\d+\.\d+)-slim-(\w+)$", (ROOT / "trainer/Dockerfile").read_text(), re.M)
    assert base, "trainer/Dockerfile is no longer FROM python:<x.y>-slim-<suite>"
    trainer = recipe.load("trainer")
    assert trainer.base.suite == base.group(2) == "bookworm"
    assert "python3" in trainer.base.packages


def test_stock_trainer_images_are_the_pinned_tensorflow():
    tensorflow = pins.pin("tensorflow-cpu")
    assert versions.TENSORFLOW_IMAGE == f"tensorflow/tensorflow:{tensorflow}"
    assert versions.TENSORFLOW_GPU_IMAGE == f"tensorflow/tensorflow:{tensorflow}-gpu"
    assert tensorflow == recipe.load("trainer").pins["tensorflow-cpu"]


@pytest.mark.parametrize(
    "field", ["hub", "proxy", "tensorflow", "tensorflow_gpu", "tensorboard", "training_operator", "kueue"]
)
def test_the_image_config_defaults_have_local_builds_of_the_same_pins(field):
    # The dev stack (images.local) runs the local build wherever the stack names the upstream image.
    from stacks import parse

    upstream = getattr(parse({}).images, field)
    local = getattr(parse({"images": {"local": True}}).images, field)
    name = recipe.STANDS_FOR[upstream.rsplit(":", 1)[0]]
    assert local == recipe.load(name).reference(), field


def test_the_dev_stack_runs_only_local_images_and_the_aks_stack_only_upstream_ones():
    from program import aks_stack, example_stack
    from stacks import parse

    dev = parse(example_stack("dev"))
    config, secrets = aks_stack()
    aks = parse(config, frozenset(secrets))
    for settings, local in ((dev, True), (aks, False)):
        named = [getattr(settings.images, f) for f in ("hub", "proxy", "tensorflow", "tensorflow_gpu", "tensorboard",
                                                       "training_operator", "kueue")]
        named += [p.image for p in settings.jupyterhub.profiles]
        assert all(i.startswith("mlplatform/") == local for i in named), named


def test_proxy_is_the_version_the_chart_pins_everywhere():
    version = versions.CONFIGURABLE_HTTP_PROXY_VERSION
    assert tag_of(versions.CONFIGURABLE_HTTP_PROXY_IMAGE) == version
    assert recipe.load("proxy").pins == {"configurable-http-proxy": version}
    for directory in (ROOT / "images/proxy", ROOT / "tests/hub"):
        manifest = json.loads((directory / "package.json").read_text())
        lock = json.loads((directory / "package-lock.json").read_text())
        where = directory.relative_to(ROOT)
        assert manifest["dependencies"]["configurable-http-proxy"] == version, f"{where}/package.json"
        assert lock["packages"]["node_modules/configurable-http-proxy"]["version"] == version, f"{where}/package-lock.json"


def test_requirements_files_agree_with_each_other():
    pins.python_pins()  # raises PinError naming both files when one package has two pins


@pytest.mark.parametrize("name", IMAGES)
def test_reference_is_a_content_tag_never_latest(name):
    reference = recipe.load(name).reference()
    assert re.fullmatch(rf"mlplatform/{name}:[0-9a-f]{{16}}", reference), reference


def test_changing_one_pin_changes_only_the_images_that_install_it(monkeypatch):
    before = {name: recipe.load(name).tag() for name in IMAGES}
    real = pins.python_pins

    def bumped(root=pins.ROOT):
        return {**real(root), "jupyterhub-idle-culler": "9.9.9"}

    monkeypatch.setattr(pins, "python_pins", bumped)
    after = {name: recipe.load(name).tag() for name in IMAGES}
    assert [name for name in IMAGES if before[name] != after[name]] == ["hub"]
