"""Fixtures for the TFRecord tests: a small synthetic dataset and its conversion."""

import pytest
from support.synthetic_data import SCENES, SIZE, make_synthetic_records

from tfrecords_tools import synthetic


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    return synthetic.write_dataset(tmp_path_factory.mktemp("synthetic"), SCENES, size=SIZE,
                                   seed=7)


@pytest.fixture(scope="session")
def synthetic_records(synthetic_dir, tmp_path_factory):
    return make_synthetic_records(synthetic_dir, tmp_path_factory.mktemp("records"))
