"""Run test code in a fresh Python process (TF device set-up happens once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOGICAL_CPUS = """
import tensorflow as tf
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration()] * {count})
"""


def run_python(code: str, logical_cpus: int = 0, timeout: float = 300,
               env: dict | None = None) -> dict:
    """Run ``code`` and return the JSON object it prints on its last stdout line.

    With ``logical_cpus``, the process's CPU is split into that many logical devices
    before anything else touches TensorFlow.
    """
    prelude = LOGICAL_CPUS.format(count=logical_cpus) if logical_cpus else ""
    script = "import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\n" + prelude + \
        textwrap.dedent(code)
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
                **(env or {})}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=timeout, env=full_env, cwd=ROOT)
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
