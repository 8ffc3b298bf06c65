"""Test set-up: quiet TensorFlow, deterministic seeds, shared fixtures, and which tests are
the end-to-end tier (``slow``)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Test files import the shared helpers as ``support.<module>``.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from support import ROOT  # noqa: E402

# The end-to-end tier: whole training runs, commands run as processes, the demo, the
# benchmark scripts' quick modes, multi-worker, load and browser sessions. Marked slow, so
# `make test` (the loop a change is checked with, under 8 minutes on 2 cores) leaves them
# out and `make test-slow` runs them; CI runs both. Each entry is a file, or a file's test,
# with the reason it is in the tier. Tests marked slow in their own file (test_learning.py)
# are in it too.
END_TO_END = {
    "test_demo.py": "the demo: six commands as processes",
    "benchmarks/test_gpu_script.py": "the GPU benchmark's CPU mode, PyTorch rows included",
    "spade_tf/training/test_equivalence.py": "one step in three processes and two workers",
    "spade_tf/training/test_train.py::test_sigkill_mid_run_resumes_from_the_last_checkpoint":
        "a training process killed, then resumed",
    "spade_tf/training/test_train.py::test_mixed_float16_counts_skipped_steps_and_refuses_a_"
    "precision_change": "three training runs under mixed float16",
    "spade_tf/training/test_train.py::test_a_failed_worker_removes_its_checkpoint_copy":
        "a multi-worker run",
    "spade_tf/training/test_train.py::test_a_model_folder_without_checkpoints_gives_the_"
    "starting_weights": "a conversion, then a training run from it",
    "spade_tf/training/test_train.py::test_a_checkpoint_without_the_batch_counter_resumes_at_"
    "the_optimizer_step": "two training runs (an old checkpoint's layout)",
    "spade_tf/training/test_train.py::test_nan_loss_stops_with_its_name":
        "a training run until its loss becomes NaN",
    "spade_tf/export/test_export.py::test_loads_in_a_fresh_process_where_spade_tf_cannot_be_"
    "imported": "TF Serving's loaders in fresh processes",
    "spade_tf/data/test_input_fn.py::test_a_users_fit_over_two_epochs_trains_in_both":
        "two epochs of a user's model.fit",
    "spade_tf/test_torch_import.py": "a fresh process per entry point",
    "spade_cli/test_clade_model.py": "a CLADE model through five commands as processes",
    "spade_cli/test_train.py": "spade-train processes: failed starts, Ctrl-C, resume",
    "spade_cli/test_recovery.py": "spade-train processes: recovery and per-epoch logs",
    "spade_cli/test_vgg_weights.py": "spade-train processes with VGG weight files",
    "spade_cli/test_synthesize_outputs.py": "a dozen spade-synthesize processes",
    "spade_cli/test_synthesize.py": "spade-synthesize processes: users' mistakes",
    "spade_cli/test_tfrecords.py": "a dozen spade-tfrecords processes, Ctrl-C included",
    "spade_cli/test_export.py": "spade-export processes",
    "spade_cli/test_evaluate.py": "spade-eval processes",
    "spade_cli/test_grey_maps.py": "spade-tfrecords and spade-synthesize processes",
    "spade_cli/test_hints.py": "every command as a process, with servers",
    "spade_cli/test_quiet.py": "every command as a process",
    "spade_cli/test_synthesize_folders.py": "spade-synthesize processes over folders",
    "serving/test_load.py": "hundreds of concurrent clients",
    "spade_tf/test_tflite.py::test_the_command_keeps_litert_s_delegate_notice_off_stderr":
        "spade-synthesize processes",
    "spade_tf/test_tflite.py::test_the_demo_models_files_are_builtins_only_and_give_its_saved_"
    "models_image": "the demo's model exported as a SavedModel and three .tflite files",
    "spade_tf/test_tflite.py::test_a_converted_ade20k_generator_is_builtins_only_and_matches":
        "the full-size ADE20K generator converted to TFLite three times",
    "serving/test_painter.py": "the painter in headless Chromium",
    **dict.fromkeys(
        (f"spade_tf/test_backends.py::{name}" for name in (
            "test_layers_and_networks_import_without_tensorflow",
            "test_files_saved_under_tensorflow_give_its_outputs_and_the_references",
            "test_files_saved_there_load_under_tensorflow",
            "test_semantic_input_and_batch_norm_training_agree_with_tensorflow",
            "test_a_bad_label_id_is_named",
            "test_training_and_export_say_they_need_the_tensorflow_backend",
            "test_the_readme_layer_example_trains_with_fit",
            "test_batch_norm_statistics_are_the_global_batchs_under_jax_data_parallel",
            "test_a_converted_ade20k_generator_gives_tensorflows_image_on_each_backend")),
        "converted reference networks, fit and batch norm in a JAX and a PyTorch process"),
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        path = item.path.relative_to(tests).as_posix()
        if path in END_TO_END or f"{path}::{item.originalname}" in END_TO_END:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Fix numpy and Keras seeds per test so every test is reproducible on its own."""
    import keras
    import numpy as np

    np.random.seed(1234)
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def configs_dir() -> Path:
    return ROOT / "configs"


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """``exports(kind)``: the session's export of a kind of support.exports.KINDS (made by
    the first test that asks, shared by the xdist workers); read-only."""
    from support.exports import Exports, shared_root

    return Exports(shared_root(tmp_path_factory) / "exports")
