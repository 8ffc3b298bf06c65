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
Run the same command again to resume from the latest checkpoint in --model-dir (on a
finished run it rewrites a lost or damaged generator.keras from the last checkpoint);
Ctrl-C (or SIGTERM) saves a checkpoint at the current step first.
Several hosts: start the same command on every host with TF_CONFIG describing the
cluster (see README, "Training")."""


def replica_count(text: str) -> int:
    """``--cpu-replicas``: 0 (no split) or a positive count."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a replica count: expected 0 (no split) or a positive number "
            "such as 2")
    return value


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
    parser.add_argument("--cpu-replicas", type=replica_count, default=0, metavar="N",
                        help="split the CPU into N logical devices and mirror over them "
                             "(machines without GPUs)")
    parser.add_argument("--verbose", default="auto", choices=("auto", "0", "1", "2"),
                        help="progress output: 1 a progress bar, 2 one line per epoch, 0 "
                             "none; auto: the bar on a terminal, else one line per epoch "
                             "(log files, nohup, cluster jobs)")
    return parser


def progress_mode(verbose: str) -> int:
    """Keras's ``verbose`` for ``--verbose``: "auto" draws the bar only on a terminal (its
    carriage returns and colour codes would fill a log file with frames)."""
    if verbose != "auto":
        return int(verbose)
    return 1 if sys.stdout.isatty() else 2


def report(message: str) -> None:
    print(f"spade-train: {message}", file=sys.stderr, flush=True)


def train_command(args: argparse.Namespace) -> None:
    from spade_tf.config import load_config

    config = load_config(args.config, args.set)
    from spade_tf.training import choose_strategy, train
    from spade_tf.training.strategy import check_batch_split

    if args.cpu_replicas > 1:  # before TensorFlow splits the CPU
        check_batch_split(config.train.batch_size, args.cpu_replicas,
                          f"--cpu-replicas {args.cpu_replicas}")
    strategy = choose_strategy(args.strategy, args.cpu_replicas)
    verbose = progress_mode(args.verbose)
    summary = train(config, args.data, args.model_dir, strategy=strategy, verbose=verbose,
                    report=report)
    total = summary["epochs"] * summary["steps_per_epoch"]
    if summary["finished"]:
        done = f"spade-train: {args.model_dir} is finished (step {summary['final_step']} of " \
               f"{total})"
        rewritten = summary.get("rewritten") or {}
        if rewritten:
            what = ", ".join(f"{name} ({problem})" for name, problem in rewritten.items())
            print(f"{done}; rewrote {what} from its last checkpoint; raise train.epochs to "
                  "train longer.")
            return
        print(f"{done}: nothing to do; raise train.epochs to train longer.")
        return
    print(f"spade-train: step {summary['final_step']} of {total} (started at "
          f"{summary['start_step']}); model folder {args.model_dir}")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), train_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
