"""``spade-serve`` pointed at the wrong folder or a taken port: one line, before TensorFlow
starts (it used to wait forever, or fail after the start-up).

The checks run in one fresh process, one ``main(argv)`` after another, which then says
whether TensorFlow was ever imported: none of them may have needed it."""

import json
import socket
import subprocess
import sys

import pytest
from support.processes import assert_one_line_error, command_env, run_command

# spade-serve's main() on each argument list of argv[1] (JSON), in this order; prints each
# one's exit status and stderr, and whether TensorFlow is imported after all of them.
CHECKS = """
import contextlib, io, json, sys
from spade_cli.serve import main
results = []
for argv in json.loads(sys.argv[1]):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
    results.append([status, stderr.getvalue()])
print(json.dumps({"results": results, "tensorflow": "tensorflow" in sys.modules}))
"""
WRONG_PATHS = {
    "exports": ["model base path {exports} is an export base", "holds exported models, not "
                "versions; give --model-base-path {exports}/spade."],
    "exports/spade/1": ["model base path {exports}/spade/1 is a single SavedModel (it holds "
                        "saved_model.pb)", "give its parent: --model-base-path {exports}/spade."],
    "missing": ["model base path {root}/missing is not a folder (it does not exist)",
                "expected <export_base>/<model_name> as written by spade-export"],
    "model": ["model base path {root}/model is a trained model folder, not an export: run "
              "spade-export --model-dir {root}/model"],
}
LAYOUT = ["exports", "exports/spade", "exports/spade/1", "exports/spade/1/saved_model.pb",
          "model", "model/config.yaml", "model/generator.keras"]


def _version(folder):
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")  # the layout is all these checks read
    return folder


def _serve(*args, timeout: float = 60):
    """spade-serve as a user runs it; ``timeout`` only catches a hang."""
    try:
        return run_command("spade-serve", *args, "--poll-seconds", "0", timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"spade-serve {' '.join(map(str, args))} was still running after {timeout} s")


def _layout(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """Every check of this module in one process: {case: CompletedProcess-like result},
    the folders they read, and whether TensorFlow was imported."""
    root = tmp_path_factory.mktemp("serve_checks")
    cases, roots = {}, {}
    for given in WRONG_PATHS:  # a folder each, to see that none is written into
        folder = roots[given] = root / given.replace("/", "_")
        _version(folder / "exports" / "spade" / "1")
        (folder / "model").mkdir()
        for name in ("config.yaml", "generator.keras"):
            (folder / "model" / name).write_text("")
        cases[given] = ["--model-base-path", folder / given, "--port", "0"]
    several = root / "several"
    _version(several / "plain" / "1")
    _version(several / "vae" / "2")
    cases["several"] = ["--model-base-path", several, "--model-name", "vae", "--port", "0"]
    served = root / "served"
    _version(served / "spade" / "1")
    cases["unknown_host"] = ["--model-base-path", served / "spade", "--port", "0",
                             "--host", "no-such-host.invalid"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases["port_in_use"] = ["--model-base-path", served / "spade", "--port", port]
        argvs = [[*map(str, argv), "--poll-seconds", "0"] for argv in cases.values()]
        out = subprocess.run([sys.executable, "-c", CHECKS, json.dumps(argvs)],
                             capture_output=True, text=True, timeout=120, env=command_env())
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    results = {name: subprocess.CompletedProcess(argv, status, "", stderr)
               for name, argv, (status, stderr) in zip(cases, argvs, answer["results"],
                                                       strict=True)}
    return {"results": results, "roots": roots, "several": several, "port": port,
            "tensorflow": answer["tensorflow"]}


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
def test_a_wrong_model_base_path_says_which_path_to_give(checks, given, words):
    root = checks["roots"][given]
    assert_one_line_error(checks["results"][given], "spade-serve",
                          *(w.format(exports=root / "exports", root=root) for w in words))
    assert _layout(root) == LAYOUT  # nothing written


def test_several_exported_models_are_listed(checks):
    assert_one_line_error(checks["results"]["several"], "spade-serve",
                          f"give --model-base-path {checks['several'] / 'vae'} "
                          "(models found here: plain, vae).")


def test_a_port_in_use_fails_at_once(checks):
    port = checks["port"]
    assert_one_line_error(checks["results"]["port_in_use"], "spade-serve",
                          f"port {port} on 127.0.0.1 is in use",
                          "choose another --port (0 picks a free one)")
    assert_one_line_error(checks["results"]["unknown_host"], "spade-serve",
                          "--host no-such-host.invalid: not a known host")


def test_the_checks_do_not_import_tensorflow(checks):
    # Each refusal above came before TensorFlow's start-up (seconds): it was never imported.
    assert checks["tensorflow"] is False
    assert len(checks["results"]) == len(WRONG_PATHS) + 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_rest_port_serves_the_api_and_the_painter_and_stops_on_sigterm(exports):
    import signal
    import urllib.request

    base = exports("paint").base
    rest = _free_port()
    # As a user meets it: the console script's exit status and its one line.
    result = _serve("--model-base-path", base, "--model-name", "paint", "--port", "0",
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
