"""``spade-train``: train GauGAN on converted TFRecords with ``model.fit``."""

from __future__ import annotations

import argparse
import os
import sys

from spade_tf.config import ConfigError, add_override_argument, load_config

EXAMPLES = """examples:
  spade-train --config configs/ade20k.yaml --data tfrecords/ade20k_train --model-dir runs/ade20k
  spade-train --config configs/demo.yaml --data tfrecords/demo --model-dir runs/demo \\
      --cpu-replicas 2 --set train.epochs=3
Run the same command again to resume from the latest checkpoint in --model-dir.
Several hosts: start the same command on every host with TF_CONFIG describing the
cluster (see README, "Training")."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spade-train", description=__doc__.split(":", 1)[1]
                                     .strip(), epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (configs/*.yaml)")
    parser.add_argument("--data", required=True, help="folder written by spade-tfrecords")
    parser.add_argument("--model-dir", required=True,
                        help="checkpoints, logs and the trained model go here")
    add_override_argument(parser)
    parser.add_argument("--strategy", default="auto",
                        choices=("auto", "default", "mirrored", "multi_worker"),
                        help="auto: multi_worker with TF_CONFIG, mirrored over several GPUs, "
                             "else one device")
    parser.add_argument("--cpu-replicas", type=int, default=0,
                        help="split the CPU into N logical devices and mirror over them "
                             "(machines without GPUs)")
    parser.add_argument("--verbose", default="auto", choices=("auto", "0", "1", "2"),
                        help="Keras progress output (1: bar, 2: a line per epoch)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        config = load_config(args.config, args.set)
    except ConfigError as error:
        print(f"spade-train: error: {error}", file=sys.stderr)
        return 2

    from spade_tf.data.manifest import DataError
    from spade_tf.model_dir import ModelDirError
    from spade_tf.train import LossBecameNaN, TrainingError, choose_strategy, train
    from spade_tf.vgg import VGGWeightsError

    try:
        strategy = choose_strategy(args.strategy, args.cpu_replicas)
        print(f"spade-train: {type(strategy).__name__} with {strategy.num_replicas_in_sync} "
              f"replica(s); global batch {config.train.batch_size}", file=sys.stderr)
        verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
        summary = train(config, args.data, args.model_dir, strategy=strategy, verbose=verbose)
    except LossBecameNaN as error:
        print(f"spade-train: stopped: {error}", file=sys.stderr)
        return 3
    except (ConfigError, DataError, ModelDirError, TrainingError, VGGWeightsError) as error:
        print(f"spade-train: error: {error}", file=sys.stderr)
        return 2
    print(f"spade-train: step {summary['final_step']} of "
          f"{summary['epochs'] * summary['steps_per_epoch']} (started at "
          f"{summary['start_step']}); model folder {args.model_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
