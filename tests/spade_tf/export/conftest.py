"""The exports these tests read (tests/support/exports.py), and one process that runs all of
them under the loaders TF Serving and TensorFlow use."""

import pytest
from support.exports import loaded_by_serving_loaders

from spade_tf import signatures as sig

# What the tests here read: kind -> the signatures each loader runs ("*": all).
LOADED = {
    "spade": {"tf2": [sig.DEFAULT_SIGNATURE, sig.SEEDED_SIGNATURE], "session": "*"},
    "plain_dontcare": {"tf2": [], "session": []},  # its signature defs
    "plain_300": {"tf2": [], "session": [sig.PNG_SIGNATURE, sig.MODEL_INFO_SIGNATURE]},
}


@pytest.fixture(scope="session")
def serving_loaders(exports) -> dict:
    """support.exports.loaded_by_serving_loaders on LOADED: ``{"exports": {kind: {"tf2" |
    "session": {signature: {output: summary}}, "inputs": {signature: [names]}}},
    "spade_importable": bool}``."""
    return loaded_by_serving_loaders(exports.root, {exports(kind): loaders
                                                    for kind, loaders in LOADED.items()})
