"""Finding and fetching mnist.npz: a mirror given with --data-url is used, bad files are refused."""

import functools
import http.server
import threading

import numpy as np
import pytest

from trainer.data import DataError, ensure_mnist, load_mnist
from trainer_fixtures import mnist_dir, unreachable_url  # noqa: F401 (pytest fixtures)


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on loopback serving the files of a directory, like a local mirror."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_absent_data_is_downloaded_from_the_mirror(tmp_path, mirror, mnist_dir):
    root, url = mirror
    (root / "mnist.npz").write_bytes((mnist_dir / "mnist.npz").read_bytes())
    data_dir = tmp_path / "data"
    path = ensure_mnist(str(data_dir), f"{url}/mnist.npz")
    assert path == str(data_dir / "mnist.npz")
    assert sorted(p.name for p in data_dir.iterdir()) == ["mnist.npz"]
    mnist = load_mnist(path)
    assert mnist.x_train.shape == (4000, 28, 28) and mnist.x_test.shape == (1000, 28, 28)


def test_present_data_is_used_without_a_download(mnist_dir, unreachable_url):
    assert ensure_mnist(str(mnist_dir), unreachable_url) == str(mnist_dir / "mnist.npz")


def test_a_mirror_serving_the_wrong_file_is_refused(tmp_path, mirror):
    root, url = mirror
    np.savez(root / "mnist.npz", images=np.zeros((3, 28, 28), np.uint8))
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match=r"missing \['x_test', 'x_train', 'y_test', 'y_train'\]"):
        ensure_mnist(str(data_dir), f"{url}/mnist.npz")
    assert list(data_dir.iterdir()) == [], "nothing may be installed from a bad download"


def test_a_missing_file_on_the_mirror_is_reported(tmp_path, mirror):
    _, url = mirror
    with pytest.raises(DataError, match=r"downloading .*/mnist.npz failed \(HTTP Error 404"):
        ensure_mnist(str(tmp_path / "data"), f"{url}/mnist.npz")


def test_images_of_the_wrong_shape_are_refused(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.zeros((4, 32, 32), np.uint8), y_train=np.zeros(4, np.uint8),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match=r"x_train \(4, 32, 32\) and y_train \(4,\) must be"):
        load_mnist(str(path))
