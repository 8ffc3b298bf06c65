"""VGG19 weights from local files: torchvision layout (parity with PyTorch). Keras's file is
in test_vgg_keras.py (no PyTorch needed)."""

import numpy as np
import pytest
from support import import_torch

from spade_tf.training.vgg import VGGWeightsError, load_vgg_features

torch = import_torch()

VGG19_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M"]
# torchvision's vgg19.features indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
RELU_OUTPUTS = (1, 6, 11, 20, 29)


def _torch_vgg19_features():
    layers, channels = [], 3
    for item in VGG19_LAYOUT:
        if item == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(channels, item, 3, padding=1), torch.nn.ReLU()]
            channels = item
    features = torch.nn.Sequential(*layers)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in features:
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2 / fan_in) ** 0.5, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)
    return features


def test_torchvision_state_dict_reproduces_pytorch_features(tmp_path):
    features = _torch_vgg19_features()
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    vgg = load_vgg_features(path)
    assert vgg.preprocessing == "torchvision"
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    ours = vgg(images)
    expected, x = [], torch.from_numpy(images.transpose(0, 3, 1, 2))
    with torch.no_grad():
        for index, module in enumerate(features):
            x = module(x)
            if index in RELU_OUTPUTS:
                expected.append(x.numpy().transpose(0, 2, 3, 1))
    assert len(ours) == 5
    for got, want in zip(ours, expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(VGGWeightsError, match="vgg_weights_path is not set"):
        load_vgg_features(None)
    with pytest.raises(VGGWeightsError, match="does not exist"):
        load_vgg_features(tmp_path / "nope.pth")
    torch.save({"classifier.0.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(VGGWeightsError, match="not a torchvision vgg19 state_dict"):
        load_vgg_features(tmp_path / "other.pth")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(VGGWeightsError, match="not a Keras VGG19"):
        load_vgg_features(tmp_path / "bad.h5")
