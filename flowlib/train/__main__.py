"""``python -m flowlib.train MODEL --data synthetic|chairs|things|sintel|kitti [...]``.

Examples:
    python -m flowlib.train spynet --data synthetic --steps 2000 --batch-size 8 --out runs/spynet
    python -m flowlib.train flownetc --data chairs --root /data/FlyingChairs_release --lr 1e-4
    python -m flowlib.train cfnet --data things --root /data/SceneFlow --init cfnet:sceneflow

Re-running the same command resumes from the newest checkpoint in --out.
"""

from __future__ import annotations

import argparse
import sys

from flowlib.train import TrainConfig, train
from flowlib.train.config import add_config_arguments, config_from_args


def build_parser(prog: str = "python -m flowlib.train") -> argparse.ArgumentParser:
    """The trainer's options, one per :class:`TrainConfig` field, plus ``--debug``."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


def run(cfg: TrainConfig, *, debug: bool = False) -> int:
    """Train ``cfg``; print the outcome; return the exit status (0, 1 error, 130 interrupted)."""
    try:
        result = train(cfg)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        if debug:
            raise
        print(f"train: error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    last = result["history"][-1] if result["history"] else {}
    print(f"done: {result['steps']} steps, loss {last.get('loss', float('nan')):.4g}; weights in {result['weights']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(config_from_args(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
