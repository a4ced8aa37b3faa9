"""One-call inference: ``load_model``, ``estimate``, ``estimate_disparity``.

Everything model-specific (normalisation, padding/resizing to the network's multiple,
output scaling) lives in the model files; this module only resolves weights, validates
and converts the user's images, and runs a jitted forward that XLA compiles once per
input shape (a video of same-sized frames compiles once).
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flowlib import _zoo

__all__ = ["Model", "load_model", "available_models", "estimate", "estimate_disparity"]

#: Images smaller than this on either side are rejected (no model can see motion there).
MIN_SIDE = 8
#: Largest accepted image (pixels per frame); larger inputs should be resized or tiled.
MAX_PIXELS = 4096 * 4096

_ASSETS = Path(__file__).resolve().parent / "assets"


def available_models() -> list[str]:
    """Names accepted by :func:`load_model`, e.g. ``["cfnet", "flownetc", ...]``."""
    return sorted(_zoo.MODELS)


class Model:
    """A Flax module bound to its weights, callable on prepared image batches.

    Attributes:
      name: zoo name ("spynet", ...).
      task: "flow" or "stereo".
      module: the Flax module.
      variables: its variables ({"params": ..., "batch_stats": ...}).
      meta: provenance of the weights (source, variant, converter, ...).
    """

    def __init__(self, name: str, module: Any, variables: Any, *, task: str, meta: dict[str, Any]):
        import jax

        self.name = name
        self.module = module
        self.variables = variables
        self.task = task
        self.meta = dict(meta)
        field = "flow" if task == "flow" else "disparity"

        def forward(variables: Any, image1: Any, image2: Any) -> Any:
            # Only the final prediction leaves the jitted function: XLA drops the rest.
            return getattr(module.apply(variables, image1, image2), field)

        self._forward = jax.jit(forward)

    def __call__(self, image1: np.ndarray, image2: np.ndarray) -> Any:
        """Run on float32 RGB batches in [0, 1], (B, H, W, 3); returns a JAX array."""
        return self._forward(self.variables, image1, image2)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, task={self.task!r}, weights={self.meta.get('weights')!r})"


def _parse_name(name: str, weights: Any) -> tuple[str, Any]:
    if ":" in name:
        name, variant = name.split(":", 1)
        if weights is not None and weights != variant:
            raise ValueError(f"model {name!r} names variant {variant!r} but weights={weights!r}")
        weights = variant
    return name, weights


def _embedded_default(name: str) -> Path | None:
    path = _ASSETS / "weights" / f"{name}.npz"
    return path if path.is_file() else None


def _load_npz(entry: _zoo.ModelEntry, path: Path) -> tuple[Any, dict[str, Any]]:
    from flowlib.convert._common import load_weights

    variables, meta = load_weights(path)
    return variables, meta


def _convert_local(entry: _zoo.ModelEntry, path: Path) -> tuple[Any, dict[str, Any]]:
    converter = importlib.import_module(entry.converter)
    variables, kwargs = converter.convert_file(path)
    return variables, {"model_kwargs": kwargs, "source": str(path), "weights": str(path)}


def _resolve_named(name: str, entry: _zoo.ModelEntry, variant: str, *, offline: bool | None,
                   progress: bool) -> tuple[Any, dict[str, Any]]:
    from flowlib import hub
    from flowlib.convert._common import save_weights

    checkpoints = entry.checkpoints
    if variant not in checkpoints:
        raise ValueError(
            f"unknown weights {variant!r} for model {name!r}; named variants: {sorted(checkpoints)}"
            " (or pass a path to a checkpoint file)"
        )
    ckpt = checkpoints[variant]
    converted = hub.cache_dir() / "converted" / f"{name}-{variant}.npz"
    if converted.is_file():
        return _load_npz(entry, converted)
    source = hub.fetch(ckpt, offline=offline, progress=progress)
    converter = importlib.import_module(entry.converter)
    variables, kwargs = converter.convert_file(source, **dict(ckpt.model_kwargs))
    from flowlib import __version__

    meta = {
        "model": name,
        "weights": f"{name}:{variant}",
        "model_kwargs": {**dict(ckpt.model_kwargs), **dict(kwargs)},
        "source_url": ckpt.url,
        "source_sha256": ckpt.sha256,
        "license": ckpt.license,
        "training_data": ckpt.training_data,
        "converter": entry.converter,
        "flowlib_version": __version__,
    }
    save_weights(converted, variables, meta)
    return variables, meta


def load_model(
    name: str = "spynet",
    weights: str | os.PathLike | None = None,
    *,
    offline: bool | None = None,
    progress: bool = True,
    dtype: str | None = None,
) -> Model:
    """Build a model with its weights.

    Args:
      name: a zoo name (``available_models()``), optionally with a variant
        (``"spynet:sintel-final"``).
      weights: ``None`` for the default (the embedded weights shipped with flowlib when
        present, else the model's default named variant), a named variant, or a path to a
        flowlib ``.npz``, a PyTorch checkpoint or (SpyNet) a folder of Torch7 files.
      offline: never touch the network (default: ``$FLOWLIB_OFFLINE``).
      progress: show a download progress bar.
      dtype: ``None`` or ``"float32"`` (default), or ``"bfloat16"``: convolutions multiply
        in bfloat16 and accumulate in float32; parameters and outputs stay float32. Opt-in,
        for accelerators: XLA:CPU runs it in float32 (no faster; README "Speed").

    Returns:
      A :class:`Model` accepted by :func:`estimate` / :func:`estimate_disparity`.
    """
    from flowlib import _compilation_cache
    from flowlib.models._layers import compute_dtype

    name, weights = _parse_name(str(name), weights)
    compute = compute_dtype(dtype)  # validate before any download
    _compilation_cache.enable()
    entry = _zoo.get(name)
    if weights is None:
        embedded = _embedded_default(name)
        if embedded is not None:
            weights = embedded
        elif entry.default_weights is not None:
            weights = entry.default_weights
        else:
            raise ValueError(f"model {name!r} has no default weights; pass weights=...")
    if isinstance(weights, (str, os.PathLike)) and Path(weights).exists():
        path = Path(weights)
        if path.suffix == ".npz":
            variables, meta = _load_npz(entry, path)
        else:
            variables, meta = _convert_local(entry, path)
        meta.setdefault("weights", str(path))
    elif isinstance(weights, str):
        variables, meta = _resolve_named(name, entry, weights, offline=offline, progress=progress)
    else:
        raise ValueError(f"weights must be None, a variant name or a path, got {weights!r}")
    module = entry.build(**dict(meta.get("model_kwargs", {})))
    if compute is not None:
        if "dtype" not in getattr(module, "__dataclass_fields__", {}):
            raise ValueError(f"model {name!r} has no dtype option (float32 only)")
        module, meta = module.clone(dtype=compute.name), {**meta, "dtype": compute.name}
    _check_variables(name, module, variables)
    return Model(name, module, variables, task=entry.task, meta=meta)


def _check_variables(name: str, module: Any, variables: Any) -> None:
    """Fail early, naming the mismatching entries, if weights do not fit the module."""
    import jax
    import jax.numpy as jnp

    from flowlib.convert._common import flatten

    dummy = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    expected = jax.eval_shape(module.init, jax.random.PRNGKey(0), dummy, dummy)
    want = {k: tuple(v.shape) for k, v in flatten(dict(expected)).items()}
    have = {k: tuple(np.shape(v)) for k, v in flatten(dict(variables)).items()}
    if want != have:
        missing = sorted(set(want) - set(have))[:10]
        extra = sorted(set(have) - set(want))[:10]
        wrong = [f"{k}: {have[k]} != {want[k]}" for k in want if k in have and have[k] != want[k]][:10]
        raise ValueError(
            f"weights do not fit model {name!r}: missing {missing}, unexpected {extra}, shapes {wrong}"
        )


@functools.lru_cache(maxsize=8)
def _cached_model(name: str, weights: str | None) -> Model:
    return load_model(name, weights)


def _model_for(model: Any, weights: Any, task: str) -> Model:
    if isinstance(model, Model):
        if weights is not None:
            raise ValueError("pass weights to load_model, not together with a Model instance")
        m = model
    elif isinstance(model, str):
        m = _cached_model(model, None if weights is None else os.fspath(weights))
    else:
        raise ValueError(f"model must be a name or a flowlib Model, got {type(model).__name__}")
    if m.task != task:
        other = "estimate_disparity" if m.task == "stereo" else "estimate"
        raise ValueError(f"model {m.name!r} is a {m.task} model; use flowlib.{other}")
    return m


def _to_float_image(x: Any, what: str) -> np.ndarray:
    """Path or array -> float32 RGB in [0, 1], (H, W, 3) or (B, H, W, 3)."""
    if isinstance(x, (str, os.PathLike)):
        from flowlib import io

        return io.read_image(x)
    if hasattr(x, "__array__") and not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{what}: expected a file path or an array, got {type(x).__name__}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255.0)
    elif x.dtype == np.uint16:
        x = x.astype(np.float32) / np.float32(65535.0)
    elif x.dtype.kind == "f":
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what}: image contains NaN or infinite values")
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(
                f"{what}: float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
                " (pass uint8 arrays for 0..255 data)"
            )
        x = np.clip(x, 0.0, 1.0)
    else:
        raise ValueError(f"{what}: expected uint8, uint16 or float pixels, got dtype {x.dtype}")
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    elif x.ndim == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(
            f"{what}: expected an image of shape (H, W, 3), (H, W) grey or a batch (B, H, W, 3),"
            f" got shape {x.shape}"
        )
    return x


def _prepare_pair(a: Any, b: Any, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, bool]:
    a = _to_float_image(a, names[0])
    b = _to_float_image(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}")
    batched = a.ndim == 4
    if not batched:
        a, b = a[None], b[None]
    _, h, w, _ = a.shape
    if a.shape[0] == 0:
        raise ValueError("empty batch: expected at least one image pair")
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {h}x{w}")
    if h * w > MAX_PIXELS:
        raise ValueError(
            f"images of {h}x{w} exceed the {MAX_PIXELS}-pixel limit; resize them (or tile) first"
        )
    return a, b, batched


def _run(m: Model, a: np.ndarray, b: np.ndarray, batch_size: int | None) -> np.ndarray:
    n = a.shape[0]
    step = n if batch_size is None else int(batch_size)
    if step <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    outs = [np.asarray(m(a[i : i + step], b[i : i + step]), dtype=np.float32) for i in range(0, n, step)]
    return np.concatenate(outs, axis=0)


def estimate(
    image1: Any,
    image2: Any,
    model: str | Model = "spynet",
    weights: str | os.PathLike | None = None,
    *,
    batch_size: int | None = None,
) -> np.ndarray:
    """Estimate optical flow from ``image1`` to ``image2``.

    Args:
      image1, image2: file paths or arrays: uint8 (0..255), uint16, or float in [0, 1];
        (H, W, 3) RGB, (H, W) grey, or a batch (B, H, W, 3). Any size >= 8x8.
      model: a zoo name (default "spynet") or a :class:`Model` from :func:`load_model`.
      weights: weights for a model given by name (see :func:`load_model`).
      batch_size: split a batch into chunks of this many pairs (bounds memory).

    Returns:
      Flow (H, W, 2) float32 in pixels, u right and v down (or (B, H, W, 2) for batches):
      ``image1[y, x]`` moves to ``image2[y + v, x + u]``.
    """
    a, b, batched = _prepare_pair(image1, image2, ("image1", "image2"))
    m = _model_for(model, weights, "flow")
    flow = _run(m, a, b, batch_size)
    return flow if batched else flow[0]


def estimate_disparity(
    left: Any,
    right: Any,
    model: str | Model = "cfnet",
    weights: str | os.PathLike | None = None,
    *,
    batch_size: int | None = None,
) -> np.ndarray:
    """Estimate the disparity of a rectified stereo pair.

    Args:
      left, right: as ``image1``/``image2`` of :func:`estimate` (rectified pair).
      model: a zoo name (default "cfnet") or a :class:`Model`.
      weights: weights for a model given by name (see :func:`load_model`).
      batch_size: split a batch into chunks of this many pairs.

    Returns:
      Disparity (H, W) float32 in pixels for the left view, ``right x = left x - d``
      (or (B, H, W) for batches).
    """
    a, b, batched = _prepare_pair(left, right, ("left", "right"))
    m = _model_for(model, weights, "stereo")
    disp = _run(m, a, b, batch_size)
    return disp if batched else disp[0]
