#!/usr/bin/env python
"""Train a config with model.fit; re-running the same command on the same work dir resumes.

    python tools/train.py CONFIG [--work-dir DIR] [--data-root DIR] [--max-iters N] [--cfg-options k=v ...]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mv2seg.cli import add_config_arguments, config_from_args, run_main  # noqa: E402
from keras_mv2seg.training import NonFiniteLossError, train  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--work-dir", help="default: work_dirs/<config name>")
    parser.add_argument("--data-root", help="dataset root (default: the config's data.data_root)")
    parser.add_argument("--max-iters", type=int, help="shorten or lengthen the schedule (train.max_iters, >= 1)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the initial weights, dropout, data order and augmentation (recorded in the work dir)")
    parser.add_argument("--resume-from", metavar="ckpt-N",
                        help="continue from this checkpoint of the work dir instead of the latest (later ones are "
                             "moved aside); lr, min_lr and the log/eval/checkpoint intervals may then change")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.max_iters is not None and args.max_iters < 1:
        parser.error(f"--max-iters must be >= 1, received {args.max_iters}")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = config_from_args(args)
    if args.max_iters is not None:
        train_cfg = config.train
        config = config.replace(max_iters=args.max_iters,
                                eval_interval=min(train_cfg.eval_interval, args.max_iters),
                                checkpoint_interval=min(train_cfg.checkpoint_interval, args.max_iters))
    work_dir = args.work_dir or os.path.join("work_dirs", config.name)
    try:
        summary = train(config, work_dir, data_root=args.data_root, seed=args.seed, verbose=0 if args.quiet else 1,
                        resume_from=args.resume_from)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    print(f"summary written to {os.path.join(work_dir, 'summary.json')}: {summary['iterations']} iterations, "
          f"best val mIoU {100 * (summary['best_mIoU'] or 0):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
