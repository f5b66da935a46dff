"""The image builder's own behaviour, without building: recipes, failures, layers, the import command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from images import build, containerd, oci, pins, recipe
from images.recipe import ROOT, RecipeError, load


@pytest.mark.parametrize(
    ("log", "package"),
    [
        ("E: Unable to locate package nodejss\n", "nodejss"),
        ("ERROR: Could not find a version that satisfies the requirement jupyterhub==9.9.9 (from versions: 5.5.0)\n"
         "ERROR: No matching distribution found for jupyterhub==9.9.9\n", "jupyterhub==9.9.9"),
        ("jupyterhub-kubespawner 7.0.0 has requirement jupyterhub>=4.0, but you have jupyterhub 3.1.0.\n",
         "jupyterhub-kubespawner 7.0.0"),
        ("npm error notarget No matching version found for configurable-http-proxy@9.9.9.\n", "configurable-http-proxy@9.9.9"),
    ],
)
def test_a_failed_step_names_the_package(log, package):
    assert build.failed_package(log) == package


def test_build_error_names_image_step_and_package(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("ERROR: No matching distribution found for tensorflow-cpu==0.0.1\n")
    error = build.BuildError("trainer", "pip install", "exit status 1", build.failed_package(log.read_text()), log)
    assert str(error).startswith("image trainer: step 'pip install' failed (package tensorflow-cpu==0.0.1): exit status 1")
    assert "No matching distribution found" in str(error)


def test_a_lock_behind_the_project_pins_fails_before_building(monkeypatch):
    real = pins.python_pins
    monkeypatch.setattr(pins, "python_pins", lambda root=pins.ROOT: {**real(root), "jupyterhub": "9.9.9"})
    with pytest.raises(build.BuildError, match=r"image hub: step 'pins' failed \(package jupyterhub\).*"
                                               r"jupyterhub==5\.5\.0 but the project pins 9\.9\.9.*make images-lock IMAGE=hub"):
        build.check_pins(recipe.load("hub"))


MINIMAL_CONFIG = '[config]\nuser = "0"\nworkdir = "/"\nentrypoint = ["sh"]\n'


def recipe_of(tmp_path, text: str) -> None:
    """An image `x` in tmp_path with the recipe `text`."""
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "image.toml").write_text('summary = "x"\n[base]\npackages = ["python3"]\n' + text)


def test_a_package_without_a_project_pin_is_refused(tmp_path):
    recipe_of(tmp_path, '[python]\npackages = ["no-such-package"]\nlock = "r.txt"\n' + MINIMAL_CONFIG)
    with pytest.raises(recipe.RecipeError, match=r"\[python\] packages: no-such-package has no pin in requirements.txt"):
        recipe.load("x", images=tmp_path)


def test_unknown_recipe_keys_are_errors(tmp_path):
    recipe_of(tmp_path, MINIMAL_CONFIG + 'entrypiont = ["sh"]\n')
    with pytest.raises(recipe.RecipeError, match=r"\[config\]: unknown key\(s\) entrypiont"):
        recipe.load("x", images=tmp_path)


def test_trainer_files_follow_the_dockerignore():
    trainer_files, sample = recipe.load("trainer").files
    copied = {destination for _, destination in recipe.expand(trainer_files)}
    assert {"/app/trainer/__main__.py", "/app/trainer/requirements.txt", "/app/trainer/train.py"} <= copied
    assert not [d for d in copied if "Dockerfile" in d or "__pycache__" in d or d.endswith("README.md") or "/docs/" in d]


def test_the_trainer_image_carries_the_sample_the_dev_stack_reads():
    from trainer.flags import SAMPLE_DATA_URL

    sample = next(f for f in recipe.load("trainer").files if f.tool)
    assert (sample.tool, "file://" + sample.dst) == ("MNIST_SAMPLE_DIR", SAMPLE_DATA_URL)


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts are character devices: mknod needs root")
def test_overlay_whiteouts_become_oci_whiteouts(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("hi\n")
    os.mknod(upper / "etc" / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    (upper / "opt").mkdir()
    os.setxattr(upper / "opt", oci.OPAQUE_XATTR, b"y")
    layer = oci.write_layer(upper, tmp_path / "blobs")
    with tarfile.open(layer.path) as tar:
        names = tar.getnames()
    assert sorted(names) == ["etc", "etc/.wh.gone", "etc/motd", "opt", "opt/.wh..wh..opq"]
    assert names.index("etc") < names.index("etc/motd"), "parents before their contents"
    assert layer.digest == "sha256:" + Path(layer.path).name


def test_archive_is_an_oci_layout_naming_the_tag(tmp_path):
    top = tmp_path / "root"
    (top / "bin").mkdir(parents=True)
    (top / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
    layer = oci.write_layer(top, tmp_path / "blobs", owner=(0, 0))
    config = oci.image_config([layer], user="1000", workdir="/", entrypoint=["/bin/hello"], cmd=[], env={"A": "1"},
                              ports=[8080], labels={}, history=["test"])
    archive = tmp_path / "image.tar"
    oci.write_archive(archive, "0123456789abcdef", [layer], config, {})
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        (entry,) = index["manifests"]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{entry['digest'].split(':')[1]}"))
        image = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))
        assert f"blobs/sha256/{layer.digest.split(':')[1]}" in tar.getnames()
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "0123456789abcdef"}
    assert image["rootfs"]["diff_ids"] == [layer.diff_id]
    assert image["config"]["ExposedPorts"] == {"8080/tcp": {}}


def test_containerd_import_names_the_image_as_pods_do():
    command = containerd.import_command(Path("/c/hub.oci.tar"), "hub", address="/run/x/containerd.sock", ctr="/bin/ctr")
    assert command == ["/bin/ctr", "--address", "/run/x/containerd.sock", "-n", "k8s.io", "images", "import",
                       "--base-name", "docker.io/mlplatform/hub", "/c/hub.oci.tar"]


def test_an_image_without_a_base_cannot_have_what_needs_debian(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "image.toml").write_text(
        'summary = "x"\n[user]\nname = "a"\nuid = 1\ngroup = "a"\ngid = 1\nhome = "/"\n'
        '[config]\nuser = "1:1"\nworkdir = "/"\nentrypoint = ["/x"]\n')
    with pytest.raises(RecipeError, match=r"user need a \[base\]"):
        load("static", tmp_path)


def test_a_file_from_an_unbuilt_tool_names_the_tool_and_its_build(tmp_path, monkeypatch):
    # An empty cache: no tool is built there.
    monkeypatch.setenv("MLPLATFORM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RecipeError, match=r"training-operator-v[\d.]+/bin/training-operator \(TRAINING_OPERATOR_DIR\) "
                                          r"is not built: tools/build.sh builds it"):
        load("operator").tag()


def test_the_dev_stack_names_the_unbuilt_tool_of_a_local_image(tmp_path, monkeypatch):
    from program import example_stack
    from stacks import ConfigError, parse

    monkeypatch.setenv("MLPLATFORM_CACHE", str(tmp_path / "cache"))
    # The first local image whose tool is missing, by name: kueue's manager (then the operator's).
    with pytest.raises(ConfigError, match=r"^mlplatform:images.local: image kueue: files: .*/kueue \(KUEUE_DIR\) is not built"):
        parse(example_stack("dev"))


def test_the_real_nodes_name_the_images_that_are_not_built(tmp_path):
    """What `bin/cluster up --real` says, before any node starts, when the cache lacks images."""
    env = {**os.environ, "MLPLATFORM_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "cluster.localcluster.images"], env=env, capture_output=True, text=True)
    assert out.returncode == 1, out
    for name in ("hub", "proxy", "notebook"):
        assert f"mlplatform/{name}:" in out.stderr, out.stderr
    # Images with a file from the tools cache have no tag until it is built, and say which.
    for name, tool in (("operator", "TRAINING_OPERATOR_DIR"), ("trainer", "MNIST_SAMPLE_DIR")):
        assert f"mlplatform/{name} (files:" in out.stderr and f"({tool}) is not built" in out.stderr, out.stderr
    assert "build them with `make images`" in out.stderr, out.stderr


def test_a_new_build_keeps_the_newest_older_ones_and_their_layers(tmp_path, monkeypatch):
    """Clones on one machine share the cache: a build removes only builds older than the newest few."""
    monkeypatch.setenv("MLPLATFORM_CACHE", str(tmp_path))
    images = tmp_path / "images"
    (images / "blobs").mkdir(parents=True)
    tags = [f"{i:016x}" for i in range(build.KEPT_BUILDS + 2)]  # oldest first
    for age, tag in enumerate(reversed(tags)):
        (images / "blobs" / f"layer-{tag}").write_bytes(b"x")
        (images / "blobs" / "shared").write_bytes(b"x")
        layers = [{"path": str(images / "blobs" / f"layer-{tag}")}, {"path": str(images / "blobs" / "shared")}]
        for suffix in (".json", ".oci.tar"):
            path = images / f"trainer-{tag}{suffix}"
            path.write_text(json.dumps({"layers": layers}) if suffix == ".json" else "archive")
            os.utime(path, (1_000_000 - age, 1_000_000 - age))
    build._prune(load("trainer"), keep=tags[-1])
    kept = sorted(p.name.split(".")[0].removeprefix("trainer-") for p in images.glob("trainer-*.json"))
    assert kept == tags[-build.KEPT_BUILDS:]
    assert sorted(p.name for p in (images / "blobs").iterdir()) == sorted(
        ["shared", *(f"layer-{tag}" for tag in tags[-build.KEPT_BUILDS:])])
