"""The hints a user gets for the usual wrong turns, through the real commands: an option
typed with underscores, a taken REST port, a folder inside an export, a gRPC client
pointed at an HTTP port. Each ends in one line, exit status 2, no traceback."""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image
from support.processes import assert_one_line_error, command_env, run_command, run_commands


def _taken_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_misspelt_options_are_named_with_the_one_meant(tmp_path):
    export, serve, evaluate = run_commands(
        ("spade-export", "--model_dir", tmp_path, "--export-base", tmp_path / "exports"),
        ("spade-serve", "--model-base-path", tmp_path, "--rest_port", "8501"),
        ("spade-eval", "fid", "--no-such-flag"), timeout=120)
    assert_one_line_error(export, "spade-export",
                          "unrecognized option --model_dir: did you mean --model-dir?")
    assert_one_line_error(serve, "spade-serve",
                          "unrecognized option --rest_port: did you mean --rest-port?")
    assert_one_line_error(evaluate, "spade-eval fid", "unrecognized option --no-such-flag",
                          "--help")


def test_a_folder_inside_an_export_names_the_base_path(tmp_path):
    base = tmp_path / "exports" / "coco"
    (base / "1" / "variables").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"")
    result = run_command("spade-serve", "--model-base-path", base / "1" / "variables",
                         "--port", "0", timeout=60)
    assert_one_line_error(result, "spade-serve", "is a folder inside the SavedModel",
                          f"give --model-base-path {base.resolve()}")


def test_a_taken_rest_port_is_not_told_to_use_0(tmp_path):
    base = tmp_path / "exports" / "spade"
    base.mkdir(parents=True)
    taken = _taken_port()
    try:
        port = taken.getsockname()[1]
        result = run_command("spade-serve", "--model-base-path", base, "--port", "0",
                             "--rest-port", port, timeout=60)
    finally:
        taken.close()
    line = assert_one_line_error(result, "spade-serve", f"port {port}", "is in use",
                                 f"choose another --rest-port (e.g. {port + 1})")
    assert "0 picks" not in line


def test_a_grpc_client_at_an_http_port_is_told_so(tmp_path):
    label = tmp_path / "label.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(label)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        result = run_command("spade-synthesize", "--server", address, "--label", label,
                             "--timeout", "5", "--out", tmp_path / "out.png", timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert_one_line_error(result, "spade-synthesize", f"{address} answers HTTP/1.1, not gRPC",
                          "give --server the gRPC port")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("argv", [["--model-base-path", "m", "--port", "0", "--rest_port=3"]])
def test_the_equals_form_is_checked_too(argv, capsys):
    from spade_cli import serve

    with pytest.raises(SystemExit) as exit_info:
        serve.main(argv)
    assert exit_info.value.code == 2
    assert "unrecognized option --rest_port: did you mean --rest-port?" in capsys.readouterr().err


def test_spade_serve_names_each_address_once(exports):
    base = exports("paint").base
    with socket.socket() as probe:  # --rest-port 0 turns REST off: a free port instead
        probe.bind(("127.0.0.1", 0))
        rest_port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "spade_cli.serve", "--model-base-path", str(base),
         "--model-name", "paint", "--port", "0", "--rest-port", str(rest_port),
         "--poll-seconds", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=command_env())
    try:
        lines = []
        for line in process.stdout:  # bounded: the server exits when its start fails
            lines.append(line.strip())
            if "painter at" in line or len(lines) > 50:
                break
    finally:
        process.send_signal(signal.SIGINT)
        rest_of_output, _ = process.communicate(timeout=60)
    output = "\n".join(lines) + rest_of_output
    assert process.returncode == 0, output
    rest = next(line for line in lines if "painter at" in line).split("REST API on ")[1]
    address = rest.split("/v1/")[0]
    assert output.count(address) == 2, output  # the API's and the painter's URL, one line
    grpc_address = next(line for line in lines if "listening on" in line).split()[-1]
    assert output.count(grpc_address) == 1, output


def test_precision_help_says_what_is_stored():
    """The three inference commands share one --precision: the same words, help and
    default (the model config's export.precision), saying what is stored."""
    export, generate, synthesize = run_commands(
        ("spade-export", "--help"), ("spade-eval", "generate", "--help"),
        ("spade-synthesize", "--help"), timeout=120)
    for result in (export, generate, synthesize):
        text = " ".join(result.stdout.split())
        assert result.returncode == 0
        assert "the network is stored and run in it" in text, text
        assert "weights stay float32" not in text
        assert "--precision {float32,bfloat16,float16}" in text
        assert "(default: the model config's export.precision, float32 unless set)" in text
    assert "with --model-dir: compute precision" in " ".join(synthesize.stdout.split())
