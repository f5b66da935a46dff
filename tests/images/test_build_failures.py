"""A build that fails says which image, which step and which package."""

from __future__ import annotations

import pytest

from images import build
from images.recipe import load

CONFIG = '[config]\nuser = "0"\nworkdir = "/"\nentrypoint = ["sh"]\n'


def recipe_in(tmp_path, text: str, **files: str):
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "image.toml").write_text(text + CONFIG)
    for name, content in files.items():
        (directory / name).write_text(content)
    return load("broken", images=tmp_path)


def test_a_debian_package_that_does_not_exist_fails_the_base_step_naming_it(tmp_path):
    recipe = recipe_in(tmp_path, 'summary = "x"\n[base]\npackages = ["python3", "no-such-deb-mlplatform"]\n')
    with pytest.raises(build.BuildError, match=r"image broken: step 'base \(mmdebstrap\)' failed "
                                               r"\(package no-such-deb-mlplatform\)") as failure:
        build.build(recipe)
    assert not build.archive_path(recipe).exists(), str(failure.value)


def test_a_python_package_that_does_not_exist_fails_pip_install_naming_it(tmp_path):
    # The hub's base packages, so the (cached) base is reused and only pip runs.
    lock = "jupyterhub==5.5.0\nno-such-package-mlplatform==1.0\n"
    recipe = recipe_in(tmp_path, f'summary = "x"\n[base]\npackages = {list(load("hub").base.packages)!r}\n'
                                 '[python]\npackages = ["jupyterhub"]\nlock = "requirements.txt"\n'.replace("'", '"'),
                       **{"requirements.txt": lock})
    with pytest.raises(build.BuildError, match=r"image broken: step 'pip install' failed "
                                               r"\(package no-such-package-mlplatform==1.0\)"):
        build.build(recipe)
    assert not build.archive_path(recipe).exists()
