"""A small synthetic dataset and its conversion, shared by the data and training tests."""

from tfrecords_tools import synthetic
from tfrecords_tools.convert import convert_listing
from tfrecords_tools.datasets import list_folders

SCENES = 12
SIZE = 96


def quiet(message: str) -> None:
    """Reporter that drops progress lines."""


def synthetic_listing(folder):
    return list_folders(folder / "images", folder / "labels", synthetic.NUM_CLASSES,
                        instances=folder / "instances")


def make_synthetic_records(folder, out, num_shards: int = 3):
    convert_listing(synthetic_listing(folder), out, num_shards=num_shards, workers=1,
                    report=quiet)
    return out


def write_training_records(scenes, out):
    """The training tests' data: 12 scenes of 64x64 (seed 3) written to ``scenes`` and
    converted into 2 shards in ``out``; returns ``out``."""
    folder = synthetic.write_dataset(scenes, 12, size=64, seed=3)
    return make_synthetic_records(folder, out, num_shards=2)
