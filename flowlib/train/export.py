"""Turn a training checkpoint into flowlib weights (``.npz`` that ``load_model`` reads).

``python -m flowlib.train.export RUN OUT.npz [--model-kwargs JSON]``

``RUN`` is a run folder (its newest checkpoint is used) or one ``step_*.npz``. Useful for
a run that was stopped early, and for inference settings that differ from training ones
(e.g. SpyNet trained on small crops with ``max_levels`` 4 runs with 6 levels on full
frames: ``--model-kwargs '{"max_levels": 6}'``). The training configuration, the step and
the source checkpoint are recorded in the weights' metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["export"]


def export(run: str | os.PathLike, out: str | os.PathLike, *,
           model_kwargs: dict[str, Any] | None = None, note: str | None = None) -> dict[str, Any]:
    """Write ``out`` from the newest checkpoint of ``run`` (or the checkpoint file ``run``).

    Args:
      run: a training run folder or a checkpoint file.
      out: destination ``.npz`` (written atomically).
      model_kwargs: entries that replace the training ``model_kwargs`` (a key mapped to
        ``None`` is dropped, i.e. the model default is used).
      note: free text stored in the metadata.

    Returns:
      the metadata written.
    """
    from flowlib import __version__, _zoo
    from flowlib.train import _checkpoint
    from flowlib.weights import save_weights

    run = Path(run)
    ckpt = _checkpoint.latest(run / "checkpoints") if run.is_dir() else run
    if ckpt is None or not ckpt.is_file():
        raise ValueError(f"{run}: no checkpoint found (expected {run}/checkpoints/step_*.npz)")
    name = run.name if run.is_dir() else ckpt.parent.parent.name
    variables, meta = _checkpoint.variables(ckpt)
    config = dict(meta.get("config", {}))
    model = config.get("model")
    if model not in _zoo.MODELS:
        raise ValueError(f"{ckpt}: checkpoint names no known model (config.model = {model!r})")
    kwargs = dict(config.get("model_kwargs", {}))
    for k, v in (model_kwargs or {}).items():
        if v is None:
            kwargs.pop(k, None)
        else:
            kwargs[k] = v
    info = {
        "model": model, "model_kwargs": kwargs, "weights": f"trained:{name}",
        "training": {**config, "steps": int(meta["step"])}, "checkpoint": ckpt.name,
        "flowlib_version": __version__, "trained_with_flowlib_version": meta.get("flowlib_version"),
        "license": "MIT (trained by flowlib)", "training_data": config.get("data"),
    }
    if note:
        info["note"] = note
    save_weights(out, variables, info)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flowlib.train.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder or step_*.npz checkpoint")
    p.add_argument("out", help="destination .npz")
    p.add_argument("--model-kwargs", default="{}", help="JSON overriding the training model_kwargs")
    p.add_argument("--note", default=None)
    a = p.parse_args(argv)
    try:
        info = export(a.run, a.out, model_kwargs=json.loads(a.model_kwargs), note=a.note)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {a.out} ({info['model']}, step {info['training']['steps']}, kwargs {info['model_kwargs']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
