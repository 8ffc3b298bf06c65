"""spade-tf: SPADE / GauGAN semantic image synthesis for TensorFlow 2 and Keras 3."""

import runpy
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
# The console commands' one table, spade_cli/commands.py. setup.py runs before the
# package is installed, so `import spade_cli` here would find nothing, or an older
# installed copy (the source folder is on sys.path only under some build front-ends):
# that one small file, which imports nothing, is run by its path instead.
COMMANDS = runpy.run_path(str(ROOT / "spade_cli" / "commands.py"))


def read_version() -> str:
    for line in (ROOT / "spade_tf" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("spade_tf/__init__.py has no __version__")


setup(
    name="spade-tf",
    version=read_version(),
    description="SPADE / GauGAN semantic image synthesis for TensorFlow 2 and Keras 3",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["spade_tf*", "spade_cli*", "tfrecords_tools*", "serving*"]),
    # Class names and colours of the datasets (spade_tf.classes); the painter page.
    package_data={"spade_tf": ["class_tables/*.json"], "serving": ["painter/*"]},
    install_requires=[
        # tensorflow-serving-api 2.21 needs the full tensorflow distribution.
        "tensorflow==2.21.0",
        # Keras 3.15 is what the code and its multi-worker workaround are tested on.
        "keras>=3.15,<3.16",
        "tensorflow-serving-api==2.21.0",
        # Training logs (tf.summary needs it; tensorflow does not pull it in).
        "tensorboard>=2.20",
        "grpcio>=1.60",
        # The REST port's HTTP server (asyncio + h11). Its h11 protocol class is extended
        # (serving/rest/protocol.py), so the range is the one tested.
        "uvicorn>=0.30,<0.56",
        "h11>=0.14",
        # Integer outputs (images) written as REST JSON in C.
        "orjson>=3.9",
        # TF Serving's Prometheus metrics (--monitoring-config-file).
        "prometheus_client>=0.20",
        "grpcio-health-checking>=1.60",
        "numpy>=1.26",
        "Pillow>=10.0",
        "PyYAML>=6.0",
    ],
    extras_require={
        # selenium drives Debian's chromium in the painter's browser tests; JAX runs the
        # layers and networks on Keras's JAX backend (tests/spade_tf/test_backends.py;
        # tested with 0.10.2 under Keras 3.15.1).
        "test": ["pytest>=8.0", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "pytest-randomly>=3.15",
                 "ruff==0.17.6", "selenium>=4.20", "ai-edge-litert>=2.3,<3",
                 "jax[cpu]>=0.10,<0.11"],
        # LiteRT's interpreter: spade-synthesize --tflite (the export needs TensorFlow only).
        "tflite": ["ai-edge-litert>=2.3,<3"],
        # Only for reading the reference's PyTorch checkpoints; never a runtime need.
        "convert": ["torch>=2.1"],
    },
    entry_points={
        "console_scripts": COMMANDS["console_scripts"](),
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: TensorFlow",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
