"""What a model base path must look like, checked without TensorFlow (``spade-serve`` runs
this before its slow start-up, so a wrong folder is reported in well under a second).

TF Serving's layout: ``<model_base_path>/<integer version>/saved_model.pb``, which
``spade-export --export-base exports --model-name spade`` writes as ``exports/spade/1/``
(the names are :mod:`spade_tf.layout`'s). The usual mistakes are one level off
(``exports`` or ``exports/spade/1``) or the trained model folder itself; each is named,
with the path to give instead. An existing folder without versions yet is fine: the
server waits for the first export.
"""

from __future__ import annotations

import os
from pathlib import Path

from spade_tf.errors import SpadeError
from spade_tf.layout import SAVED_MODEL_FILE, VERSION_NAME, is_model_folder, version_folders

EXPECTED = "expected <export_base>/<model_name> as written by spade-export (e.g. exports/spade)"


class ServerStartError(SpadeError, RuntimeError):
    """The server cannot start (no model base path, port taken, first load failed)."""


def check_model_base_path(path: str | os.PathLike, model_name: str = "spade") -> None:
    """Raise :class:`ServerStartError` when ``path`` cannot be a model base path: missing,
    a file, one version folder, a folder of model base paths, or a trained model folder."""
    path = Path(path)
    if not path.exists():
        raise ServerStartError(f"model base path {path} is not a folder (it does not exist): "
                               f"{EXPECTED}.")
    if not path.is_dir():
        raise ServerStartError(f"model base path {path} is not a folder (it is a file): "
                               f"{EXPECTED}.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ServerStartError(f"model base path {path} cannot be read (permission denied).")
    if (path / SAVED_MODEL_FILE).is_file():
        if VERSION_NAME.fullmatch(path.name):
            hint = f"give its parent: --model-base-path {path.parent}"
        else:
            hint = (f"put it in an integer version folder, e.g. exports/{model_name}/1/, and "
                    f"give --model-base-path exports/{model_name}")
        raise ServerStartError(f"model base path {path} is a single SavedModel (it holds "
                               f"{SAVED_MODEL_FILE}), not the folder of its versions: {hint}.")
    if version_folders(path):
        return
    inside = next((parent for parent in path.resolve().parents
                   if (parent / SAVED_MODEL_FILE).is_file()), None)
    if inside is not None:  # e.g. exports/spade/1/variables: a folder inside one version
        base = inside.parent if VERSION_NAME.fullmatch(inside.name) else inside
        raise ServerStartError(f"model base path {path} is a folder inside the SavedModel "
                               f"{inside}, not the folder of its versions: give "
                               f"--model-base-path {base}.")
    models = sorted(entry.name for entry in path.iterdir()
                    if entry.is_dir() and version_folders(entry))
    if models:
        chosen = model_name if model_name in models else models[0]
        others = f" (models found here: {', '.join(models)})" if len(models) > 1 else ""
        raise ServerStartError(f"model base path {path} is an export base: it holds exported "
                               f"models, not versions; give --model-base-path "
                               f"{path / chosen}{others}.")
    if is_model_folder(path):
        raise ServerStartError(
            f"model base path {path} is a trained model folder, not an export: run "
            f"spade-export --model-dir {path} --export-base exports --model-name {model_name}, "
            f"then give --model-base-path exports/{model_name}.")
