import pytest

from spade_tf.config import ConfigError, ModelConfig, load_config

CONFIGS = ["ade20k", "cityscapes", "coco_stuff", "custom", "demo"]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_load(name, configs_dir):
    config = load_config(configs_dir / f"{name}.yaml")
    assert config.model.image_size[1] == config.model.crop_size


def test_reference_dataset_settings(configs_dir):
    city = load_config(configs_dir / "cityscapes.yaml").model
    assert (city.semantic_channels, city.num_upsampling_layers, city.image_size) == (
        36, "more", (256, 512))
    ade = load_config(configs_dir / "ade20k.yaml")
    assert ade.model.semantic_channels == 151 and ade.data.load_size == 286
    coco = load_config(configs_dir / "coco_stuff.yaml").model
    assert coco.semantic_channels == 184 and coco.image_size == (256, 256)


def test_overrides_apply_with_yaml_types(configs_dir):
    config = load_config(configs_dir / "ade20k.yaml",
                         ["model.base_filters=32", "model.use_vae=true", "train.kl_weight=0.1"])
    assert config.model.base_filters == 32
    assert config.model.use_vae is True
    assert config.train.kl_weight == 0.1


@pytest.mark.parametrize("override, words", [
    ("model.base_filter=32", "unknown key model.base_filter"),
    ("modle.base_filters=32", "unknown section 'modle'"),
    ("model.base_filters=abc", "model.base_filters='abc' has type str: expected int"),
    ("model.use_vae=1", "model.use_vae=1 has type int: expected bool"),
    ("model.norm_type=group", "model.norm_type='group' is invalid"),
    ("model.num_classes=-3", "model.num_classes=-3 is invalid"),
    ("model.crop_size=100", "model.crop_size=100 cannot be upsampled to"),
    ("model.base_filters", "malformed"),
    ("model.dontcare_label=3", "model.dontcare_label=3 is invalid: expected an id outside"),
])
def test_bad_values_name_the_key(override, words, configs_dir):
    with pytest.raises(ConfigError) as error:
        load_config(configs_dir / "demo.yaml", ["model.use_dontcare_label=true", override])
    message = str(error.value)
    assert words in message
    assert "\n" not in message


def test_crop_size_error_suggests_a_valid_size():
    with pytest.raises(ConfigError, match="multiple of 32, e.g. 96"):
        ModelConfig(crop_size=100)


def test_aspect_ratio_that_leaves_no_rows_is_rejected():
    with pytest.raises(ConfigError, match="model.aspect_ratio=20.0 leaves no rows"):
        ModelConfig(crop_size=256, aspect_ratio=20.0)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_floats_accept_integers_and_yaml_round_trips(tmp_path):
    config = load_config(None, ["model.aspect_ratio=2", "model.crop_size=512"])
    assert config.model.aspect_ratio == 2.0 and isinstance(config.model.aspect_ratio, float)
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config
