"""spade_tf.export_metadata: one schema for spade_model.json, read by every client alike;
spade_tf.signatures: one table of signatures."""

import dataclasses
import json
import re

import pytest
from support import ROOT

from spade_tf import signatures as sig
from spade_tf.export_metadata import PAINTER_KEYS, SCHEMA_VERSION, ExportMetadata, MetadataError

METADATA = ExportMetadata(
    model_name="spade", version=3, image_size=(32, 48), num_classes=4,
    use_dontcare_label=True, dontcare_label=255, use_instance_edges=False, use_vae=True,
    latent_dim=8, max_batch_size=2, max_pixels=4096, precision="bfloat16",
    signatures=tuple(sig.signature_names(use_vae=True)),
    classes={"source": "test", "classes": [{"id": 0, "name": "sky", "color": [1, 2, 3]}]})


def test_round_trip_through_json(tmp_path):
    path = tmp_path / "spade_model.json"
    path.write_text(METADATA.to_json(indent=2))
    assert ExportMetadata.read(path) == METADATA
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["image_size"] == [32, 48]


def test_files_written_before_the_schema_version_read_as_version_1():
    data = METADATA.to_dict()
    del data["schema_version"]
    assert ExportMetadata.from_dict(data).schema_version == 1


def test_the_exported_generator_is_named_and_older_files_read_as_raw():
    averaged = dataclasses.replace(METADATA, weights="ema")
    assert ExportMetadata.from_dict(json.loads(averaged.to_json())).weights == "ema"
    data = METADATA.to_dict()
    del data["weights"]  # written before the key existed: the trained generator
    assert ExportMetadata.from_dict(data).weights == "raw"
    assert ExportMetadata.from_dict(data).schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("change, message", [
    ({"schema_version": SCHEMA_VERSION + 1}, "newer than this spade-tf reads"),
    ({"weights": "average"}, "weights must be 'ema' or 'raw'"),
    ({"image_size": [32]}, "image_size must be [height, width]"),
    ({"max_batch_size": "8"}, "max_batch_size must be an integer"),
    ({"num_classes": True}, "num_classes must be an integer"),
])
def test_bad_metadata_is_named(change, message):
    with pytest.raises(MetadataError, match=re.escape(message)):
        ExportMetadata.from_dict({**METADATA.to_dict(), **change}, "model_info")


def test_a_missing_key_is_named():
    data = METADATA.to_dict()
    del data["use_vae"]
    with pytest.raises(MetadataError, match="model_info has no 'use_vae'"):
        ExportMetadata.from_dict(data, "model_info")


def test_the_class_table_comes_from_the_metadata_or_is_numbered():
    assert METADATA.class_table().name_of(0) == "sky"
    numbered = dataclasses.replace(METADATA, classes=None).class_table()
    assert numbered.num_classes == 4 and numbered.dontcare_id == 255


def test_the_painter_reads_only_keys_of_the_schema():
    """painter.js reads model_info's JSON as ``info.<key>``: every key it reads is in the
    schema (renaming a field without the page fails here)."""
    script = (ROOT / "serving" / "painter" / "painter.js").read_text()
    read = set(re.findall(r"\binfo\.([a-z_]+)", script))
    fields = {field.name for field in dataclasses.fields(ExportMetadata)}
    assert read == set(PAINTER_KEYS)
    assert read <= fields


def test_the_signature_table_gives_each_signature_its_inputs():
    assert sig.signature_names(use_vae=False) == [
        sig.MODEL_INFO_SIGNATURE, sig.DEFAULT_SIGNATURE, sig.PNG_SIGNATURE]
    assert len(sig.signature_names(use_vae=True)) == 8
    assert sig.signature_inputs(sig.SEEDED_SIGNATURE, uses_instances=True) == (
        sig.LABEL_IDS, sig.INSTANCE_IDS, sig.SEED)
    assert sig.signature_inputs(sig.PNG_STYLE_SIGNATURE, uses_instances=False) == (
        sig.LABEL_PNG, sig.STYLE_PNG)
    assert sig.signature_inputs(sig.ENCODE_SIGNATURE, uses_instances=True) == (sig.STYLE_IMAGE,)
    every_input = {name for row in sig.SIGNATURES for name in
                   sig.signature_inputs(row.name, uses_instances=True)}
    assert every_input == set(sig.INPUT_SPECS)
