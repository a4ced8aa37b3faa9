"""``python -m flowlib.train MODEL --data synthetic|chairs|things|sintel|kitti [...]``.

Examples:
    python -m flowlib.train spynet --data synthetic --steps 2000 --batch-size 8 --out runs/spynet
    python -m flowlib.train flownetc --data chairs --root /data/FlyingChairs_release --lr 1e-4
    python -m flowlib.train cfnet --data things --root /data/SceneFlow --init cfnet:sceneflow

Re-running the same command resumes from the newest checkpoint in --out.
"""

from __future__ import annotations

import argparse
import json
import sys

from flowlib import _zoo
from flowlib.train import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flowlib.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(_zoo.MODELS))
    p.add_argument("--data", default="synthetic", choices=["synthetic", "chairs", "things", "sintel", "kitti"])
    p.add_argument("--root", default=None)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, nargs=2, default=[256, 320], metavar=("H", "W"))
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--schedule", default="cosine", choices=["constant", "cosine", "step"])
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/<model>)")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--init", default=None, help="fine-tune from these weights (name:variant or path)")
    p.add_argument("--model-kwargs", default="{}", help='JSON, e.g. \'{"maxdisp": 192}\'')
    p.add_argument("--data-kwargs", default="{}",
                   help='JSON for the synthetic generator, e.g. \'{"motion": 0.5}\' or \'{"max_disparity": 64}\'')
    p.add_argument("--freeze", default=None, help="regex of parameter paths to keep fixed")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-photometric", action="store_true",
                   help="no colour jitter / noise (geometric augmentation only): an early curriculum stage")
    p.add_argument("--debug", action="store_true")
    a = p.parse_args(argv)
    cfg = TrainConfig(
        model=a.model, data=a.data, root=a.root, steps=a.steps, batch_size=a.batch_size, crop=tuple(a.crop),
        lr=a.lr, schedule=a.schedule, warmup=a.warmup, weight_decay=a.weight_decay, seed=a.seed,
        out=a.out or f"runs/{a.model}", checkpoint_every=a.checkpoint_every, log_every=a.log_every,
        init=a.init, model_kwargs=json.loads(a.model_kwargs), data_kwargs=json.loads(a.data_kwargs), freeze=a.freeze, workers=a.workers,
        progress=not a.no_progress, photometric=not a.no_photometric,
    )
    try:
        result = train(cfg)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        if a.debug:
            raise
        print(f"train: error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    last = result["history"][-1] if result["history"] else {}
    print(f"done: {result['steps']} steps, loss {last.get('loss', float('nan')):.4g}; weights in {result['weights']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
