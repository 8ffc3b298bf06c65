"""``spade-train``: train GauGAN on converted TFRecords with ``model.fit``."""

from __future__ import annotations

import argparse
import sys

from spade_cli.app import new_parser, run
from spade_tf.config import STRATEGIES, add_override_argument

EXAMPLES = """examples:
  spade-train --config configs/ade20k.yaml --data tfrecords/ade20k_train --model-dir runs/ade20k
  spade-train --config configs/demo.yaml --data tfrecords/demo --model-dir runs/demo \\
      --cpu-replicas 2 --set train.epochs=3
Run the same command again to resume from the latest checkpoint in --model-dir.
Several hosts: start the same command on every host with TF_CONFIG describing the
cluster (see README, "Training")."""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("spade-train", "Train GauGAN on converted TFRecords with model.fit.",
                        EXAMPLES)
    parser.add_argument("--config", required=True, help="experiment YAML (configs/*.yaml)")
    parser.add_argument("--data", required=True, help="folder written by spade-tfrecords")
    parser.add_argument("--model-dir", required=True,
                        help="checkpoints, logs and the trained model go here")
    add_override_argument(parser)
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES,
                        help="auto: multi_worker with TF_CONFIG, mirrored over several GPUs, "
                             "else one device")
    parser.add_argument("--cpu-replicas", type=int, default=0,
                        help="split the CPU into N logical devices and mirror over them "
                             "(machines without GPUs)")
    parser.add_argument("--verbose", default="auto", choices=("auto", "0", "1", "2"),
                        help="Keras progress output (1: bar, 2: a line per epoch)")
    return parser


def train_command(args: argparse.Namespace) -> None:
    from spade_tf.config import load_config

    config = load_config(args.config, args.set)
    from spade_tf.training import choose_strategy, train

    strategy = choose_strategy(args.strategy, args.cpu_replicas)
    print(f"spade-train: {type(strategy).__name__} with {strategy.num_replicas_in_sync} "
          f"replica(s); global batch {config.train.batch_size}", file=sys.stderr)
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    summary = train(config, args.data, args.model_dir, strategy=strategy, verbose=verbose)
    print(f"spade-train: step {summary['final_step']} of "
          f"{summary['epochs'] * summary['steps_per_epoch']} (started at "
          f"{summary['start_step']}); model folder {args.model_dir}")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), train_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
