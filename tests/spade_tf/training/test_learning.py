"""It learns: a few CPU minutes on the synthetic scenes make colours follow the labels.

Measure: each generated pixel's class is read back from its colour (nearest base colour
of the synthetic scenes) and compared with the label map it was generated from; the
score is the mean intersection-over-union over classes ("synthetic mIoU"), on held-out
label maps. Marked slow: run with ``pytest -m slow``.
"""

import pytest
from support import ROOT
from support.synthetic_data import make_synthetic_records

from spade_tf.config import load_config
from spade_tf.data import make_input_fn
from spade_tf.evaluation import synthetic_miou
from spade_tf.inference_rules import to_uint8
from spade_tf.training import train
from tfrecords_tools import synthetic

pytestmark = pytest.mark.slow


def test_generated_colours_follow_the_label_map(tmp_path):
    scenes = synthetic.write_dataset(tmp_path / "train", 64, size=64, seed=11)
    held_out = synthetic.write_dataset(tmp_path / "held_out", 8, size=64, seed=12)
    train_records = make_synthetic_records(scenes, tmp_path / "train_records", num_shards=4)
    test_records = make_synthetic_records(held_out, tmp_path / "test_records", num_shards=1)
    config = load_config(ROOT / "configs" / "demo.yaml",
                         ["train.epochs=100", "train.decay_epochs=20", "train.batch_size=8",
                          "train.checkpoint_every_steps=100000"])
    test_batch = next(iter(make_input_fn(test_records, config.model, config.data, 8,
                                         augment=False, shuffle=False)(None)))

    def score(trainer) -> float:
        return synthetic_miou(to_uint8(trainer(test_batch, training=False)),
                              test_batch["label"].numpy())

    from spade_tf.training import build_trainer

    before = score(build_trainer(config))
    summary = train(config, train_records, tmp_path / "run", verbose=0)
    after = score(summary["trainer"])
    print(f"synthetic mIoU on held-out label maps: {before:.3f} at step 0, {after:.3f} after "
          f"{summary['final_step']} steps")
    assert after > 0.5 and after > before + 0.3
