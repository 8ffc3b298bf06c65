"""The 8 real COCO-Stuff triples in ../shared convert, inspect and load."""

import collections
import csv

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support import SHARED_DATA
from support.synthetic_data import quiet

from spade_tf.classes import class_table, read_class_file
from spade_tf.config import load_config
from spade_tf.data import load_dataset
from spade_tf.data.manifest import read_manifest
from spade_tf.data.schema import parse_example
from spade_tf.models import build_semantic_input
from tfrecords_tools.convert import convert_listing
from tfrecords_tools.datasets import list_coco_stuff
from tfrecords_tools.inspect import inspect_dataset

SAMPLE = SHARED_DATA / "coco_stuff_sample"
pytestmark = pytest.mark.skipif(not (SAMPLE / "val_img").is_dir(),
                                reason="../shared/data/coco_stuff_sample is not here")


@pytest.fixture(scope="module")
def coco_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    convert_listing(list_coco_stuff(SAMPLE, "val"), out, num_shards=2, workers=2, report=quiet)
    return out


def test_converts_and_inspects(coco_records):
    manifest, report = inspect_dataset(coco_records)
    assert manifest.num_examples == 8 and report.num_examples == 8 and report.problems == []
    assert manifest.num_classes == 182 and manifest.dontcare_label == 255
    # Don't-care pixels are counted in the last histogram bin; the sample has some.
    assert manifest.class_histogram[182] > 0
    # Sizes as in the COCO metadata of the sample (images.csv).
    rows = list(csv.DictReader((SAMPLE / "images.csv").open()))
    assert report.image_sizes == collections.Counter(
        (int(row["height"]), int(row["width"])) for row in rows)


def test_loads_with_dontcare_and_instance_edges(coco_records, configs_dir):
    config = load_config(configs_dir / "coco_stuff.yaml")
    batch = next(iter(load_dataset(coco_records, config.model, config.data, 4, augment=False,
                                   shuffle=False)))
    assert batch["image"].shape == (4, 256, 256, 3)
    labels = batch["label"].numpy()
    assert 255 in labels and labels[labels != 255].max() < 182
    semantic = build_semantic_input(config.model)(batch["label"], batch["instance"]).numpy()
    assert semantic.shape == (4, 256, 256, 184)
    np.testing.assert_array_equal(semantic[..., 182] == 1, labels == 255)
    edges = semantic[..., 183]
    assert 0.005 < edges.mean() < 0.5


def test_label_maps_come_back_exactly(coco_records):
    source = np.asarray(Image.open(SAMPLE / "val_label" / "000000001268.png"))
    found = 0
    for path in read_manifest(coco_records).shard_paths(coco_records):
        for record in tf.data.TFRecordDataset(str(path)):
            example = parse_example(record)
            if example["key"].numpy().decode().endswith("000000001268"):
                np.testing.assert_array_equal(example["label"].numpy(), source)
                found += 1
    assert found == 1


def test_the_coco_stuff_table_names_the_sample_datas_classes():
    """Our COCO-Stuff names are the dataset's own list (the sample's classes.txt)."""
    from_file = read_class_file(SAMPLE / "classes.txt", 182, 255)
    assert from_file.names == class_table("coco_stuff", 182, 255).names
    assert (from_file.dontcare_id, from_file.dontcare_name) == (255, "unlabeled")
