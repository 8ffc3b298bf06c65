"""make_input_fn feeds a user's own ``fit`` loop; load_dataset reads one pass."""

from support import ROOT
from support.synthetic_data import make_synthetic_records

from spade_tf.config import load_config
from spade_tf.data import load_dataset, make_input_fn
from spade_tf.training import build_trainer
from tfrecords_tools import synthetic


def test_a_users_fit_over_two_epochs_trains_in_both(tmp_path):
    folder = synthetic.write_dataset(tmp_path / "scenes", 8, size=64, seed=5)
    records = make_synthetic_records(folder, tmp_path / "records", num_shards=2)
    config = load_config(ROOT / "configs" / "demo.yaml", ["train.batch_size=4"])
    input_fn = make_input_fn(records, config.model, config.data, 4)
    assert input_fn.steps_per_epoch == 2
    history = build_trainer(config).fit(input_fn(None), epochs=2,
                                        steps_per_epoch=input_fn.steps_per_epoch, verbose=0)
    # A single pass would run dry after epoch 1 and log zeros (no batches) for epoch 2.
    for name in ("g_total", "d_total", "g_feature_matching"):
        assert len(history.history[name]) == 2
        assert all(value > 0 for value in history.history[name]), (name, history.history)
    # load_dataset is one pass: 8 examples, 2 batches, then the end.
    assert len(list(load_dataset(records, config.model, config.data, 4))) == 2
