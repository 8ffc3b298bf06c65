"""SpadeClient and spade-synthesize against the in-process server on 127.0.0.1."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from PIL import Image

from serving import client as client_module
from serving.client import ServingError, SpadeClient
from spade_cli.synthesize import main as synthesize_main
from spade_tf import signatures as sig

DEADLINE = 30.0


def test_synthesize_default_equals_in_process_and_keras(plain_client, plain_model):
    maps = plain_model.random_maps(seed=20)
    image = plain_client.synthesize(maps[sig.LABEL_IDS][0].astype(np.uint8))
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    expected = plain_model.in_process(sig.DEFAULT_SIGNATURE, **maps)[sig.IMAGE][0]
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(image, plain_model.keras_image(maps)[0])


def test_synthesize_seeded_is_reproducible_and_equals_keras(vae_client, vae_model):
    maps = vae_model.random_maps(seed=21, batch=3)
    labels, instances = maps[sig.LABEL_IDS], maps[sig.INSTANCE_IDS]
    batch = vae_client.synthesize(labels, instances, seed=9)
    assert batch.shape == (3, 64, 64, 3)
    seeds = np.full(3, 9, np.int64)
    np.testing.assert_array_equal(
        batch, vae_model.in_process(sig.SEEDED_SIGNATURE, **maps, seed=seeds)[sig.IMAGE])
    np.testing.assert_array_equal(batch,
                                  vae_model.keras_image(maps, vae_model.seeded_latent(seeds)))
    single = vae_client.synthesize(labels[1], instances[1], seed=9)
    np.testing.assert_array_equal(single, batch[1])
    other = vae_client.synthesize(labels[1], instances[1], seed=10)
    assert not np.array_equal(other, single)


def test_synthesize_with_style_and_encode_style(vae_client, vae_model):
    maps = vae_model.random_maps(seed=22, batch=2)
    style = np.random.default_rng(22).integers(0, 256, (48, 40, 3)).astype(np.uint8)
    image = vae_client.synthesize(maps[sig.LABEL_IDS], maps[sig.INSTANCE_IDS],
                                  style_image=style)
    styles = np.repeat(style[np.newaxis], 2, axis=0)  # one photo styles the whole batch
    np.testing.assert_array_equal(
        image, vae_model.in_process(sig.STYLE_SIGNATURE, **maps, style_image=styles)[sig.IMAGE])
    mean, log_variance = vae_client.encode_style(style)
    expected = vae_model.in_process(sig.ENCODE_SIGNATURE, style_image=style[np.newaxis])
    assert mean.shape == log_variance.shape == (vae_model.config.latent_dim,)
    np.testing.assert_array_equal(mean, expected[sig.MEAN][0])
    np.testing.assert_array_equal(log_variance, expected[sig.LOG_VARIANCE][0])


def test_default_signature_of_a_vae_model_draws_a_style(vae_client, vae_model):
    maps = vae_model.random_maps(seed=23)
    image = vae_client.synthesize(maps[sig.LABEL_IDS][0], maps[sig.INSTANCE_IDS][0])
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_predict_reports_version_and_signature(vae_client, vae_model):
    prediction = vae_client.predict({sig.STYLE_IMAGE: np.zeros((1, 8, 8, 3), np.uint8)},
                                    sig.ENCODE_SIGNATURE, version=1, output_filter=[sig.MEAN])
    assert (prediction.model_name, prediction.version, prediction.signature_name) == \
        (vae_model.name, 1, sig.ENCODE_SIGNATURE)
    assert list(prediction.outputs) == [sig.MEAN]


def test_metadata_and_status(vae_client, plain_client):
    metadata = vae_client.metadata()
    assert metadata["name"] == "spade" and metadata["version"] == 1
    assert sorted(metadata["signatures"]) == sorted(
        [sig.DEFAULT_SIGNATURE, sig.SEEDED_SIGNATURE, sig.STYLE_SIGNATURE, sig.ENCODE_SIGNATURE,
         sig.PNG_SIGNATURE, sig.PNG_SEEDED_SIGNATURE, sig.PNG_STYLE_SIGNATURE,
         sig.MODEL_INFO_SIGNATURE])
    seeded = metadata["signatures"][sig.SEEDED_SIGNATURE]
    assert seeded["inputs"] == {sig.LABEL_IDS: ("int32", [-1, -1, -1]),
                                sig.INSTANCE_IDS: ("int32", [-1, -1, -1]),
                                sig.SEED: ("int64", [-1])}
    assert seeded["outputs"] == {sig.IMAGE: ("uint8", [-1, 64, 64, 3])}
    assert vae_client.status() == {1: "AVAILABLE"}
    assert sorted(plain_client.metadata()["signatures"]) == sorted(
        [sig.DEFAULT_SIGNATURE, sig.PNG_SIGNATURE, sig.MODEL_INFO_SIGNATURE])


def test_server_errors_are_serving_errors_with_the_code(vae_client, vae_model, vae_server):
    maps = vae_model.random_maps(seed=24)
    with pytest.raises(ServingError) as raised:
        vae_client.synthesize(maps[sig.LABEL_IDS][0] + 10, maps[sig.INSTANCE_IDS][0], seed=1)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "found id" in raised.value.message
    with pytest.raises(ServingError) as raised:
        vae_client.synthesize(maps[sig.LABEL_IDS][0], seed=1)  # this model needs instances
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sig.INSTANCE_IDS in raised.value.message
    with pytest.raises(ServingError) as raised:
        vae_client.synthesize(maps[sig.LABEL_IDS][0], maps[sig.INSTANCE_IDS][0], version=3)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    with SpadeClient(vae_server.address, "other", timeout=DEADLINE) as other:
        with pytest.raises(ServingError) as raised:
            other.metadata()
        assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_client_side_checks(vae_client):
    labels = np.zeros((64, 64), np.int32)
    with pytest.raises(ValueError, match="not both"):
        vae_client.synthesize(labels, labels, seed=1, style_image=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="integer ids"):
        vae_client.synthesize(labels.astype(np.float32), labels)
    with pytest.raises(ValueError, match="uint8"):
        vae_client.encode_style(np.zeros((8, 8, 3), np.float32))


def test_retries_unavailable_with_exponential_backoff_only(monkeypatch, vae_client, vae_model):
    sleeps: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", sleeps.append)
    # Nothing listens on port 1 of loopback: every attempt answers UNAVAILABLE.
    with SpadeClient("127.0.0.1:1", timeout=5.0, retries=3, backoff=0.25) as down:
        with pytest.raises(ServingError) as raised:
            down.metadata()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert sleeps == [0.25, 0.5, 1.0]
    sleeps.clear()
    with pytest.raises(ServingError):  # INVALID_ARGUMENT: the request's fault, not retried
        vae_client.synthesize(np.full((64, 64), 9), np.zeros((64, 64), np.int32), seed=1)
    assert sleeps == []


# -- spade-synthesize -------------------------------------------------------------------


def test_spade_synthesize_reads_16_bit_pngs_and_writes_the_client_image(
        tmp_path, vae_server, vae_client, vae_model):
    maps = vae_model.random_maps(seed=25)
    labels, instances = maps[sig.LABEL_IDS][0], maps[sig.INSTANCE_IDS][0]
    # 16-bit label map (mode I;16) and an instance map with ids over 255.
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "label.png")
    Image.fromarray((instances * 1000).astype(np.uint16)).save(tmp_path / "inst.png")
    assert Image.open(tmp_path / "label.png").mode.startswith("I;16")
    Image.fromarray(np.full((30, 20, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    common = ["--server", vae_server.address, "--label", str(tmp_path / "label.png"),
              "--instance", str(tmp_path / "inst.png")]
    assert synthesize_main([*common, "--seed", "4", "--out", str(tmp_path / "seeded.png")]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "seeded.png")),
                                  vae_client.synthesize(labels, instances * 1000, seed=4))
    assert synthesize_main([*common, "--style", str(tmp_path / "photo.png"),
                            "--out", str(tmp_path / "sub" / "styled.png")]) == 0
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "sub" / "styled.png")),
        vae_client.synthesize(labels, instances * 1000,
                              style_image=np.full((30, 20, 3), 90, np.uint8)))


def test_spade_synthesize_reads_palette_label_maps(tmp_path, plain_server, plain_client,
                                                   plain_model):
    labels = plain_model.random_maps(seed=26)[sig.LABEL_IDS][0].astype(np.uint8)
    palette = Image.frombytes("P", labels.shape[::-1], labels.tobytes())
    palette.putpalette([channel for i in range(256) for channel in (i, 255 - i, 0)])
    palette.save(tmp_path / "label.png")
    assert synthesize_main(["--server", plain_server.address, "--label",
                            str(tmp_path / "label.png"), "--model-name", plain_model.name,
                            "--out", str(tmp_path / "out.png")]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")),
                                  plain_client.synthesize(labels))


def test_spade_synthesize_errors_are_one_line_and_exit_2(tmp_path, capsys, vae_server):
    # A colour map (a grey one saved as RGB, all channels equal, is read as ids).
    Image.fromarray(np.full((64, 64, 3), (9, 0, 0), np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "label.png")
    server = ["--server", vae_server.address, "--out", str(tmp_path / "out.png")]
    cases = [
        (["--label", str(tmp_path / "missing.png")], "missing.png"),
        (["--label", str(tmp_path / "rgb.png")], "single-channel"),
        # Found before the call since spade-synthesize reads the model's description.
        (["--label", str(tmp_path / "label.png"), "--seed", "1"],
         "this model uses instance maps (model.use_instance_edges): give --instances"),
        (["--label", str(tmp_path / "label.png"), "--instance", str(tmp_path / "label.png"),
          "--model-name", "nope"], "NOT_FOUND"),
    ]
    for arguments, words in cases:
        assert synthesize_main([*server, *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("spade-synthesize: error:") and words in error
        assert error.count("\n") == 1, error
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(SystemExit) as exited:  # --seed and --style exclude each other
        synthesize_main([*server, "--label", "x.png", "--seed", "1", "--style", "y.png"])
    assert exited.value.code == 2


class FakeClock:
    """The client's clock: ``sleep`` moves it on at once (and is recorded), nothing else
    does, so what the client decides depends on its arithmetic alone."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_total_timeout_bounds_the_retries(monkeypatch):
    # Nothing listens on port 1: without the bound, 10 retries would wait 0.5 * (2**10 - 1) s.
    clock = FakeClock()
    monkeypatch.setattr(client_module, "time", clock)
    with SpadeClient("127.0.0.1:1", timeout=5.0, retries=10, backoff=0.5,
                     total_timeout=1.5) as down:
        deadlines = []
        call = down._prediction.GetModelMetadata

        def recorded(request, timeout):
            deadlines.append(timeout)
            return call(request, timeout=timeout)

        down._prediction.GetModelMetadata = recorded
        with pytest.raises(ServingError) as raised:
            down.metadata()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    # One wait of 0.5 s; the next (1 s) would reach the 1.5 s bound, so the client gives up
    # instead. Each attempt's deadline is what is left of the bound, never the 5 s per call.
    assert clock.sleeps == [0.5]
    assert deadlines == [1.5, 1.0]


def test_serving_errors_read_without_tensorflow_formatting(vae_client, vae_model):
    maps = vae_model.random_maps(seed=27)
    with pytest.raises(ServingError) as raised:
        vae_client.synthesize(np.full((64, 64), 6), maps[sig.INSTANCE_IDS][0], seed=1)
    # The server sends TF Serving's wording; the error reads as a sentence.
    assert raised.value.message.startswith("assertion failed: [label ids must be in 0..3")
    assert str(raised.value) == ("INVALID_ARGUMENT: label ids must be in 0..3; found id 6 "
                                 "(occurrences: 4096). Check the class count of the model and "
                                 "of the label maps.")
    with pytest.raises(ServingError) as raised:
        vae_client.synthesize(np.zeros((64, 64), np.int32), maps[sig.INSTANCE_IDS][0],
                              style_image=np.zeros((2, 8, 8, 3), np.uint8))
    assert str(raised.value) == "INVALID_ARGUMENT: one style_image per label map (received 2)"


