"""Fixtures shared by the test modules (instead of modules importing each
other): toy data sets, a free port, the environment of a CPU subprocess and
the weights-hash hook of the multi-process tests. Plain helper functions
(micro presets, random weights, the hand-written reference network) are in
``helpers.py`` beside this file."""
import os
import os.path as osp
import socket
import sys
import types

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # tools.lib, and the configs' own imports
    sys.path.insert(0, REPO)

from helpers import state_dict_sha256  # noqa: E402
from tools.lib.toy_data import generate_toy_ade, generate_toy_coco  # noqa

TESTS = osp.dirname(osp.abspath(__file__))


@pytest.fixture(scope='session')
def toy_coco(tmp_path_factory) -> str:
    """A COCO-format toy set: 8 train / 2 val images of 64 px."""
    root = str(tmp_path_factory.mktemp('toy') / 'coco') + '/'
    generate_toy_coco(root, seed=5, num_train=8, num_val=2, img_size=64)
    return root


@pytest.fixture(scope='session')
def toy_ade(tmp_path_factory) -> str:
    """An ADE20K-layout toy set: 8 train / 2 val images of 64 px."""
    root = str(tmp_path_factory.mktemp('toy') / 'ade') + '/'
    generate_toy_ade(root, seed=5, num_train=8, num_val=2, img_size=64)
    return root


@pytest.fixture
def free_port() -> int:
    """A TCP port nobody listens on, for a torchrun rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def cpu_env() -> dict:
    """Environment of a subprocess that must run on CPU whatever the machine
    has: CUDA hidden (a gloo run with CUDA visible would put every process on
    GPU 0), one thread per process (2-process runs on 2 cores)."""
    return dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
                MKL_NUM_THREADS='1', PYTHON=sys.executable)


@pytest.fixture(scope='session')
def weights_hash_hook() -> types.SimpleNamespace:
    """``WeightsHashHook`` (tests/weights_hash_hook.py): every rank writes
    ``rank<r>.sha256`` of its trainable weights into the work dir after
    training. ``pythonpath`` makes it importable in a subprocess,
    ``sha256(state_dict, names)`` hashes a checkpoint the same way."""
    return types.SimpleNamespace(
        module='weights_hash_hook', type='WeightsHashHook', pythonpath=TESTS,
        sha256=state_dict_sha256)
