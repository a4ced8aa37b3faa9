"""``python -m flowlib.convert MODEL SRC DST``: official weights -> flowlib ``.npz``.

SRC is a PyTorch checkpoint (zip or legacy format, ``.pth``/``.pth.tar``/``.ckpt``) or,
for SpyNet, a folder of the original Torch7 ``modelL*.t7`` files. torch is never needed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

from flowlib import _zoo
from flowlib.weights import save_weights


def _sha256(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert(model: str, src: str, dst: str) -> None:
    """Convert ``src`` for zoo model ``model`` and write ``dst`` atomically."""
    from flowlib import __version__

    spec = _zoo.spec(model)
    if not os.path.exists(src):
        raise ValueError(f"{src}: no such file or directory")
    if spec.convert is None:
        raise ValueError(f"{model} has no converter: it loads only flowlib .npz files")
    variables, kwargs = spec.convert(src)
    meta = {
        "model": model,
        "weights": os.path.basename(os.path.normpath(src)),
        "model_kwargs": dict(kwargs),
        "source": os.path.abspath(src),
        "source_sha256": _sha256(src),
        "converter": spec.convert.__module__,
        "flowlib_version": __version__,
    }
    save_weights(dst, variables, meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flowlib.convert", description=__doc__)
    p.add_argument("model", choices=sorted(_zoo.MODELS))
    p.add_argument("src")
    p.add_argument("dst")
    args = p.parse_args(argv)
    try:
        convert(args.model, args.src, args.dst)
    except (ValueError, OSError) as err:
        print(f"convert: error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
