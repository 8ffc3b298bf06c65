"""Fixtures for the converter tests: PyTorch reference networks saved as state_dicts.

Without torch (the optional ``[convert]`` extra) these tests are skipped, except under
``make test``, which installs torch and sets ``SPADE_TF_REQUIRE_TORCH=1``: there a
missing torch fails the run instead of silently skipping the parity proof.
"""

import pytest
from support import import_torch

torch = import_torch()

from spade_tf.testing import torch_reference as reference  # noqa: E402


@pytest.fixture
def save(tmp_path):
    """save(network, name, data_parallel=False) -> path of its state_dict file."""

    def _save(network, name: str, data_parallel: bool = False):
        path = tmp_path / name
        reference.save_state_dict(network, str(path), data_parallel=data_parallel)
        return path

    return _save
