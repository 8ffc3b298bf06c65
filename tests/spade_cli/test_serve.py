"""``spade-serve`` pointed at the wrong folder or a taken port: one line within seconds,
before TensorFlow starts (it used to wait forever, or fail after the start-up)."""

import socket
import subprocess
import sys
import time

import pytest
from support.models import save_random_model
from support.processes import assert_one_line_error, command_env, run_command

# Well under TensorFlow's start-up (several seconds): the checks run before it.
FAST = 3.0


def _version(folder):
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")  # the layout is all these checks read
    return folder


def _serve(*args, timeout: float = 30):
    started = time.monotonic()
    try:
        result = run_command("spade-serve", *args, "--poll-seconds", "0", timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"spade-serve {' '.join(map(str, args))} was still running after {timeout} s")
    return result, time.monotonic() - started


@pytest.mark.parametrize("given, words", [
    ("exports", ["model base path {exports} is an export base", "holds exported models, not "
                 "versions; give --model-base-path {exports}/spade."]),
    ("exports/spade/1", ["model base path {exports}/spade/1 is a single SavedModel (it holds "
                         "saved_model.pb)", "give its parent: --model-base-path {exports}/spade."]),
    ("missing", ["model base path {root}/missing is not a folder (it does not exist)",
                 "expected <export_base>/<model_name> as written by spade-export"]),
    ("model", ["model base path {root}/model is a trained model folder, not an export: run "
               "spade-export --model-dir {root}/model"]),
])
def test_a_wrong_model_base_path_says_which_path_to_give(tmp_path, given, words):
    exports = tmp_path / "exports"
    _version(exports / "spade" / "1")
    (tmp_path / "model").mkdir()
    for name in ("config.yaml", "generator.keras"):
        (tmp_path / "model" / name).write_text("")
    result, seconds = _serve("--model-base-path", tmp_path / given, "--port", "0")
    assert_one_line_error(result, "spade-serve",
                          *(w.format(exports=exports, root=tmp_path) for w in words))
    assert seconds < FAST, seconds
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "exports", "exports/spade", "exports/spade/1", "exports/spade/1/saved_model.pb",
        "model", "model/config.yaml", "model/generator.keras"]


def test_several_exported_models_are_listed(tmp_path):
    _version(tmp_path / "plain" / "1")
    _version(tmp_path / "vae" / "2")
    result, _ = _serve("--model-base-path", tmp_path, "--model-name", "vae", "--port", "0")
    assert_one_line_error(result, "spade-serve", f"give --model-base-path {tmp_path / 'vae'} "
                          "(models found here: plain, vae).")


def test_a_port_in_use_fails_at_once(tmp_path):
    _version(tmp_path / "spade" / "1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, seconds = _serve("--model-base-path", tmp_path / "spade", "--port", port)
    assert_one_line_error(result, "spade-serve", f"port {port} on 127.0.0.1 is in use",
                          "choose another --port (0 picks a free one)")
    assert seconds < FAST, seconds
    result, seconds = _serve("--model-base-path", tmp_path / "spade", "--port", "0",
                             "--host", "no-such-host.invalid")
    assert_one_line_error(result, "spade-serve", "--host no-such-host.invalid: not a known host")
    assert seconds < FAST, seconds


def test_the_checks_do_not_import_tensorflow(tmp_path):
    code = ("import sys; from spade_cli.serve import main; "
            f"status = main(['--model-base-path', {str(tmp_path / 'x')!r}]); "
            "print(status, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=command_env())
    assert out.stdout.split() == ["2", "False"], out.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_rest_port_serves_the_api_and_the_painter_and_stops_on_sigterm(tmp_path):
    import json
    import signal
    import urllib.request

    from spade_tf.config import ModelConfig
    from spade_tf.export import export_model

    model = ModelConfig(num_classes=3, crop_size=32, base_filters=2, spade_hidden_filters=4,
                        classes="")
    folder = save_random_model(tmp_path / "model", model, seed=1)
    base = export_model(folder, tmp_path / "exports", "paint", warmup=False).parent
    rest = _free_port()
    result, _ = _serve("--model-base-path", base, "--model-name", "paint", "--port", "0",
                       "--rest-port", "0", "--cors-origin", "*")
    assert_one_line_error(result, "spade-serve", "--cors-origin needs --rest-port")
    process = subprocess.Popen(
        [sys.executable, "-m", "spade_cli.serve", "--model-base-path", str(base),
         "--model-name", "paint", "--port", "0", "--rest-port", str(rest),
         "--poll-seconds", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=command_env())
    try:
        lines = [process.stdout.readline() for _ in range(2)]
        assert lines[1].strip() == (f"spade-serve: REST API on http://127.0.0.1:{rest}/v1/"
                                    f"models/paint; painter at http://127.0.0.1:{rest}/"
                                    "?model=paint"), lines
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/v1/models/paint",
                                    timeout=30) as answer:
            status = json.load(answer)
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/", timeout=30) as answer:
            page = answer.read().decode()
            assert answer.headers["Content-Type"].startswith("text/html")
        assert "painter.js" in page
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in process.stderr.read()
