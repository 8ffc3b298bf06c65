"""The input function under MirroredStrategy on 2 logical CPU devices."""

from support.processes import run_python
from support.synthetic_data import SCENES, make_synthetic_records

from tfrecords_tools import synthetic


def _records(tmp_path, num_shards):
    folder = synthetic.write_dataset(tmp_path / "synthetic", SCENES, size=64, seed=1)
    return make_synthetic_records(folder, tmp_path / f"records{num_shards}", num_shards)


CODE = """
import json
import numpy as np
from spade_tf.config import DataConfig, ModelConfig
from spade_tf.data import make_input_fn

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
model = ModelConfig(num_classes=8, use_instance_edges=True, crop_size=64)
input_fn = make_input_fn({path!r}, model, DataConfig(preprocess="none"), global_batch_size=4,
                         augment=False, shuffle=False, num_epochs=1)
dataset = strategy.distribute_datasets_from_function(input_fn)
per_replica, labels = [], []
for batch in dataset:
    for replica in strategy.experimental_local_results(batch["label"]):
        per_replica.append(int(replica.shape[0]))
        labels.extend(np.asarray(replica).reshape(replica.shape[0], -1).tolist())
print(json.dumps({{"per_replica": per_replica,
                  "distinct": len({{tuple(x) for x in labels}}), "total": len(labels)}}))
"""


def test_each_replica_gets_half_the_global_batch_and_every_example_once(tmp_path):
    for shards in (4, 1):  # file-level sharding, then record-level with one shard
        records = _records(tmp_path, shards)
        result = run_python(CODE.format(path=str(records)), logical_cpus=2)
        assert set(result["per_replica"]) == {2}
        assert result["total"] == SCENES and result["distinct"] == SCENES


def test_two_input_pipelines_read_disjoint_halves(tmp_path):
    import numpy as np
    import tensorflow as tf

    from spade_tf.config import DataConfig, ModelConfig
    from spade_tf.data import make_input_fn

    model = ModelConfig(num_classes=8, use_instance_edges=True, crop_size=64)
    for shards in (4, 1):  # whole shards per pipeline, then every other record of one
        input_fn = make_input_fn(_records(tmp_path, shards), model, DataConfig(preprocess="none"),
                                 global_batch_size=2, augment=False, shuffle=False,
                                 drop_remainder=False, num_epochs=1)
        seen = []
        for pipeline in range(2):
            context = tf.distribute.InputContext(2, pipeline, 2)
            labels = [np.asarray(b["label"]).tobytes() for b in input_fn(context).unbatch()]
            seen.append(set(labels))
            assert len(labels) == SCENES // 2
        assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == SCENES
