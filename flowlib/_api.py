"""One-call inference: ``load_model``, ``estimate``, ``estimate_disparity``.

Everything model-specific (normalisation, padding/resizing to the network's multiple,
output scaling) lives in the model files; this module only resolves weights, validates
and converts the user's images, and runs a jitted forward that XLA compiles once per
input shape (a video of same-sized frames compiles once).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowlib import _compilation_cache, _zoo

__all__ = ["Model", "load_model", "available_models", "estimate", "estimate_disparity",
           "DisparityRangeWarning"]

#: Images smaller than this on either side are rejected (no model can see motion there).
MIN_SIDE = 8
#: Largest accepted image (pixels per frame); larger inputs should be resized or tiled.
MAX_PIXELS = 4096 * 4096

_ASSETS = Path(__file__).resolve().parent / "assets"


class DisparityRangeWarning(UserWarning):
    """A disparity estimate piles up at the top of the model's search range: the scene
    probably has larger disparities, which the model caps at ``maxdisp``.

    Attributes:
      maxdisp: the model's largest disparity searched (pixels).
      fraction: fraction of the finite estimates within :data:`CAP_BAND` px of ``maxdisp``.
    """

    def __init__(self, maxdisp: int, fraction: float):
        self.maxdisp, self.fraction = maxdisp, fraction
        super().__init__(
            f"{100 * fraction:.1f} % of the disparity estimate lies within {CAP_BAND:g} px of the "
            f"largest disparity searched (maxdisp={maxdisp}); larger disparities are capped "
            f"there. For a nearer scene load the model with a larger range, e.g. "
            f"load_model(..., maxdisp={suggested_maxdisp(maxdisp)}) (command line: --max-disp)")


#: Pixels within this many px of ``maxdisp`` count as "at the top of the range".
CAP_BAND = 1.0
#: A larger fraction of finite pixels there raises :class:`DisparityRangeWarning`.
CAP_FRACTION = 0.005


def suggested_maxdisp(maxdisp: int) -> int:
    """The next range to try after ``maxdisp``: 1.5x, rounded up to a multiple of 32 (what
    CFNet needs)."""
    return 32 * -(-(3 * int(maxdisp)) // 64)


def capped_fraction(disparity: np.ndarray, maxdisp: float) -> float:
    """Fraction of the finite values of ``disparity`` within :data:`CAP_BAND` px of
    ``maxdisp`` (0 for a map with no finite value)."""
    finite = np.isfinite(disparity)
    n = int(finite.sum())
    return float((disparity[finite] >= maxdisp - CAP_BAND).sum()) / n if n else 0.0


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

        if getattr(module, "runs_in_stages", False):
            # A model that compiles itself in parts (PatchFlow) runs unjitted.
            self._forward: Any = _StagedForward(forward)
        else:
            self._forward = _compilation_cache.CachedFunction(jax.jit(forward), name)
        self._on_compile: Callable[[tuple[int, ...]], None] | None = None

    def __call__(self, image1: np.ndarray, image2: np.ndarray) -> Any:
        """Run on float32 RGB batches in [0, 1], (B, H, W, 3); returns a JAX array."""
        return self._forward(self.variables, image1, image2)

    @property
    def on_compile(self) -> Callable[[tuple[int, ...]], None] | None:
        """If set, called with the ``(B, H, W, 3)`` input shape just before XLA compiles the
        forward for a new shape (not when the compilation cache holds it): the command line
        says "compiling" there."""
        return self._on_compile

    @on_compile.setter
    def on_compile(self, callback: Callable[[tuple[int, ...]], None] | None) -> None:
        self._on_compile = callback
        self._forward.on_compile = None if callback is None else (
            lambda args: callback(tuple(np.shape(args[1]))))

    def __repr__(self) -> str:
        return f"Model({self.name!r}, task={self.task!r}, weights={self.meta.get('weights')!r})"


class _StagedForward:
    """The forward of a model that compiles its own stages: called as is; ``on_compile``
    (``on_compile(args)``, as :class:`flowlib._compilation_cache.CachedFunction`'s) is
    called once in a call where any stage compiles."""

    def __init__(self, forward: Callable[..., Any]):
        self._forward = forward
        self.on_compile: Callable[[tuple], None] | None = None

    def __call__(self, *args: Any) -> Any:
        callback = self.on_compile
        if callback is None:
            return self._forward(*args)
        fired = []

        def once(_: tuple) -> None:
            if not fired:
                fired.append(True)
                callback(args)

        with _compilation_cache.announcing(once):
            return self._forward(*args)


def _parse_name(name: str, weights: Any) -> tuple[str, Any]:
    if ":" in name:
        name, variant = name.split(":", 1)
        if weights is not None and weights != variant:
            raise ValueError(f"model {name!r} names variant {variant!r} but weights={weights!r}")
        weights = variant
    return name, weights


def embedded_default(name: str) -> Path | None:
    """The weights file shipped with flowlib for model ``name`` (its spec's ``embedded``)."""
    embedded = _zoo.spec(name).embedded
    if embedded is None:
        return None
    path = _ASSETS / "weights" / embedded
    return path if path.is_file() else None


# ----------------------------------------------------------------- weight sources (resolvers)

#: Suffixes that make a string a file name rather than a variant name.
_FILE_SUFFIXES = (".npz", ".pth", ".pt", ".pytorch", ".tar", ".t7", ".ckpt", ".bin", ".pkl")


def _looks_like_path(weights: Any) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    text = str(weights)
    return os.sep in text or "/" in text or text.lower().endswith(_FILE_SUFFIXES)


def _load_npz(name: str, spec: Any, path: Any, **_: Any) -> tuple[Any, dict[str, Any]]:
    from flowlib.weights import load_weights

    path = Path(path)
    variables, meta = load_weights(path)
    owner = meta.get("model")
    if owner is not None and owner != name:
        raise ValueError(f"{path} holds {owner} weights, not {name} ones; "
                         f"use load_model({owner!r}, {os.fspath(path)!r})")
    return variables, meta


def _convert_local(name: str, spec: Any, path: Any, **_: Any) -> tuple[Any, dict[str, Any]]:
    path = Path(path)
    if spec.convert is None:
        raise ValueError(f"{path}: {name} has no converter for other checkpoints; pass no "
                         f"weights (its default) or a flowlib .npz")
    try:
        variables, kwargs = spec.convert(path)
    except (ValueError, KeyError) as err:
        owner = _identify_checkpoint(path, skip=spec.convert)
        if owner is not None:
            raise ValueError(f"{path} is a {owner} checkpoint, not a {name} one; "
                             f"use load_model({owner!r}, {os.fspath(path)!r})") from err
        raise
    return variables, {"model_kwargs": kwargs, "source": str(path), "weights": str(path)}


def _identify_checkpoint(path: Path, *, skip: Callable[..., Any]) -> str | None:
    """The zoo model whose converter accepts ``path`` (only on the error path: slow)."""
    tried = [skip]
    for other in _zoo.specs():
        if other.convert is None or any(other.convert is seen for seen in tried):
            continue
        tried.append(other.convert)
        if _converts(other.convert, path):
            return other.name
    return None


def _converts(convert: Callable[..., Any], path: Path) -> bool:
    try:
        convert(path)
    except Exception:  # noqa: BLE001 - any failure means "not this model's checkpoint"
        return False
    return True


def _resolve_named(name: str, spec: Any, variant: str, *, offline: bool | None,
                   progress: bool) -> tuple[Any, dict[str, Any]]:
    from flowlib import hub
    from flowlib.weights import save_weights

    checkpoints = spec.checkpoints
    if variant not in checkpoints:
        raise ValueError(
            f"unknown weights {variant!r} for model {name!r}; named variants: {sorted(checkpoints)}"
            " (or pass a path to a checkpoint file)"
        )
    ckpt = checkpoints[variant]
    converted = hub.converted_path(name, variant)
    if converted.is_file():
        return _load_npz(name, spec, converted)
    source = hub.fetch(ckpt, offline=offline, progress=progress)
    variables, kwargs = spec.convert(source, **dict(ckpt.model_kwargs))
    from flowlib import __version__

    meta = {
        "model": name,
        "weights": f"{name}:{variant}",
        "model_kwargs": {**dict(ckpt.model_kwargs), **dict(kwargs)},
        "source_url": ckpt.url,
        "source_sha256": ckpt.sha256,
        "license": ckpt.license,
        "training_data": ckpt.training_data,
        "converter": spec.convert.__module__,
        "flowlib_version": __version__,
    }
    save_weights(converted, variables, meta)
    return variables, meta


def _missing_file(name: str, spec: Any, weights: Any, **_: Any) -> Any:
    raise FileNotFoundError(f"weights file {os.fspath(weights)}: no such file or folder")


def _bad_weights(name: str, spec: Any, weights: Any, **_: Any) -> Any:
    raise ValueError(f"weights must be None, a variant name or a path, got {weights!r}")


def _is_file(suffix: str | None) -> Callable[[Any], bool]:
    def match(weights: Any) -> bool:
        if not isinstance(weights, (str, os.PathLike)) or not Path(weights).exists():
            return False
        return suffix is None or Path(weights).suffix.lower() == suffix

    return match


#: Where weights come from, first match wins: (what, matches(weights), load).
#: ``weights=None`` was already replaced by the embedded file or the default variant.
_RESOLVERS: tuple[tuple[str, Callable[[Any], bool], Callable[..., Any]], ...] = (
    ("flowlib .npz (embedded, exported or converted)", _is_file(".npz"), _load_npz),
    ("PyTorch checkpoint or Torch7 folder (converted on load)", _is_file(None), _convert_local),
    ("missing file", _looks_like_path, _missing_file),
    ("named variant", lambda w: isinstance(w, str), _resolve_named),
    ("anything else", lambda w: True, _bad_weights),
)


def _default_weights(name: str, spec: Any) -> Any:
    embedded = embedded_default(name)
    if embedded is not None:
        return embedded
    if spec.default_weights is not None:
        return spec.default_weights
    raise ValueError(f"model {name!r} has no default weights; pass weights=...")


def _model_name(name: Any, weights: Any) -> tuple[str, Any]:
    """``(zoo name, weights)``; a flowlib .npz given as the name names its own model."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    if text.split(":", 1)[0] in _zoo.MODELS or not _looks_like_path(text):
        return _parse_name(text, weights)
    if weights is not None:
        raise ValueError(f"load_model({text!r}, ...): the first argument is a model name "
                         f"({', '.join(available_models())}), not a file")
    if not Path(text).exists():
        raise FileNotFoundError(f"weights file {text}: no such file or folder")
    if Path(text).suffix.lower() == ".npz":
        from flowlib.weights import load_meta

        owner = load_meta(text).get("model")
        if owner in _zoo.MODELS:
            return owner, Path(text)
    raise ValueError(f"{text} is a file, not a model name: pass the model too, as "
                     f"load_model(MODEL, {text!r}) with MODEL one of "
                     f"{', '.join(available_models())}")


def recorded_model(weights: str | None, task: str | None = None) -> str | None:
    """The zoo model a flowlib ``.npz`` records in its metadata, if it does (and is a model of
    ``task`` when given); None for anything else."""
    if weights is None or not weights.lower().endswith(".npz") or not os.path.isfile(weights):
        return None
    from flowlib.weights import load_meta

    model = load_meta(weights).get("model")
    if model not in _zoo.MODELS or (task is not None and _zoo.spec(model).task != task):
        return None
    return model


def load_model(
    name: str | os.PathLike = _zoo.DEFAULT_FLOW_MODEL,
    weights: str | os.PathLike | None = None,
    *,
    offline: bool | None = None,
    progress: bool = True,
    dtype: str | None = None,
    **options: Any,
) -> Model:
    """Build a model with its weights.

    Args:
      name: a zoo name (``available_models()``), optionally with a variant
        (``"spynet:sintel-final"``), or the path of a flowlib ``.npz`` (which records its
        model).
      weights: ``None`` for the default (the embedded weights shipped with flowlib when
        present, else the model's default named variant), a named variant, or a path to a
        flowlib ``.npz``, a PyTorch checkpoint or (SpyNet) a folder of Torch7 files.
      offline: never touch the network (default: ``$FLOWLIB_OFFLINE``).
      progress: show a download progress bar.
      dtype: ``None`` or ``"float32"`` (default), or ``"bfloat16"``: convolutions multiply
        in bfloat16 and accumulate in float32; parameters and outputs stay float32. Opt-in,
        for accelerators: XLA:CPU runs it in float32 (no faster; README "Speed").
      **options: the model's settings (the ``options`` of its spec):
        ``max_levels`` (SpyNet pyramid levels), ``div_flow`` (FlowNet output scale),
        ``maxdisp`` (largest disparity: CFNet, a multiple of 32; PatchStereo), ``preset``
        (PatchFlow, PatchStereo: ``"fast"``, ``"default"``, ``"accurate"``), ``iters`` (RAFT
        flow updates, default 12) and ``lookup`` (RAFT's correlation: ``"volume"`` builds the
        all-pairs volume, ``"on_the_fly"`` computes each lookup from the features in memory
        linear in the pixels, same flow within 1e-4 px, ``"hybrid"`` builds the pooled
        levels and computes level 0 on the fly; the default ``"auto"`` takes the volume up
        to 2^28 volume elements, ``B * (H/8 * W/8)^2`` (1 GiB in float32: one pair of
        about a megapixel), the hybrid while pyramid level 1 holds at most 2^28 (one
        1920x1080 pair), and the on-the-fly lookup above). They override what the weights record.

    Returns:
      A :class:`Model` accepted by :func:`estimate` / :func:`estimate_disparity`.
    """
    from flowlib.models._spec import compute_dtype

    name, weights = _model_name(name, weights)
    compute = compute_dtype(dtype)  # validate before any download
    _compilation_cache.is_disabled()  # a bad $FLOWLIB_COMPILATION_CACHE fails here, early
    spec = _zoo.spec(name)
    options = spec.check_options(options)
    if compute is not None and compute.name not in spec.dtypes:
        raise ValueError(f"model {name!r} has no dtype option ({', '.join(spec.dtypes)} only)")
    if weights is None:
        weights = _default_weights(name, spec)
    load = next(load for _, match, load in _RESOLVERS if match(weights))
    variables, meta = load(name, spec, weights, offline=offline, progress=progress)
    if isinstance(weights, (str, os.PathLike)) and Path(weights).exists():
        meta.setdefault("weights", str(weights))
    kwargs = {**dict(meta.get("model_kwargs", {})), **options}
    try:
        module = spec.build(**kwargs)
    except TypeError as err:
        raise ValueError(f"weights {meta.get('weights', weights)} were not made for {name}: "
                         f"their settings {sorted(kwargs)} are not {name}'s ({err})") from err
    if compute is not None:
        module = spec.build(**{**kwargs, "dtype": compute.name})
        meta = {**meta, "dtype": compute.name}
    _check_variables(name, module, variables)
    if options:
        meta["model_options"] = options
    return Model(name, module, variables, task=spec.task, meta=meta)


def _parameter_shapes(module: Any) -> dict[str, tuple[int, ...]]:
    """``{path: shape}`` of the variables ``module`` expects, traced once per module settings
    (Flax modules compare and hash by their fields; tracing CFNet's init takes about a second)."""
    try:
        hash(module)
    except TypeError:  # a field that cannot be hashed: trace every time
        return _trace_parameter_shapes.__wrapped__(module)
    return _trace_parameter_shapes(module)


@functools.lru_cache(maxsize=32)
def _trace_parameter_shapes(module: Any) -> dict[str, tuple[int, ...]]:
    import jax
    import jax.numpy as jnp

    from flowlib.weights import flatten

    dummy = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    # An abstract key: a concrete one (jax.random.PRNGKey) compiles its seeding in every
    # fresh process, for nothing here.
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    expected = jax.eval_shape(module.init, key, dummy, dummy)
    return {k: tuple(v.shape) for k, v in flatten(dict(expected)).items()}


def _check_variables(name: str, module: Any, variables: Any) -> None:
    """Fail early, naming the mismatching entries, if weights do not fit the module."""
    from flowlib.weights import flatten

    want = _parameter_shapes(module)
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
        name = model.split(":", 1)[0]
        kind = _zoo.spec(name).task if name in _zoo.MODELS else None
        if kind is not None and kind != task:  # before any weights are loaded
            other = "estimate_disparity" if kind == "stereo" else "estimate"
            raise ValueError(f"model {name!r} is a {kind} model; use flowlib.{other}")
        m = _cached_model(model, None if weights is None else os.fspath(weights))
    else:
        raise ValueError(f"model must be a name or a flowlib Model, got {type(model).__name__}")
    if m.task != task:
        other = "estimate_disparity" if m.task == "stereo" else "estimate"
        raise ValueError(f"model {m.name!r} is a {m.task} model; use flowlib.{other}")
    return m


def _pil_to_array(image: Any) -> np.ndarray:
    """A PIL image as its samples: 8-bit modes as uint8, 16-bit grey as uint16."""
    if image.mode in ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "LA":
        image = image.convert("L")
    if image.mode not in ("L", "RGB", "RGBA"):
        raise ValueError(f"PIL image mode {image.mode!r} is not supported; convert it to 'RGB'")
    return np.asarray(image)


def _to_float_image(x: Any, what: str) -> np.ndarray:
    """Path or array -> float32 RGB in [0, 1], (H, W, 3) or (B, H, W, 3)."""
    if isinstance(x, (str, os.PathLike)):
        from flowlib import io

        return io.read_image(x)
    if type(x).__module__.startswith("PIL."):
        x = _pil_to_array(x)
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
    if x.ndim in (3, 4) and x.shape[-1] == 4:
        x = x[..., :3]  # drop alpha, as reading an RGBA file does
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    elif x.ndim in (3, 4) and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(
            f"{what}: expected an image of shape (H, W, 3), (H, W, 4) RGBA, (H, W) grey or a"
            f" batch (B, H, W, 3), got shape {x.shape}"
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
    check_size(h, w)
    return a, b, batched


def check_size(height: int, width: int) -> None:
    """Raise ``ValueError`` unless an image of ``height`` x ``width`` can be estimated on
    (at least :data:`MIN_SIDE` on each side, at most :data:`MAX_PIXELS` pixels)."""
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got "
                         f"{height}x{width}")
    if height * width > MAX_PIXELS:
        raise ValueError(f"images of {height}x{width} exceed the {MAX_PIXELS}-pixel limit; "
                         "resize them (or tile) first")


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
    model: str | Model = _zoo.DEFAULT_FLOW_MODEL,
    weights: str | os.PathLike | None = None,
    *,
    batch_size: int | None = None,
) -> np.ndarray:
    """Estimate optical flow from ``image1`` to ``image2``.

    Args:
      image1, image2: file paths or arrays: uint8 (0..255), uint16, or float in [0, 1];
        (H, W, 3) RGB, (H, W) grey, or a batch (B, H, W, 3). Any size >= 8x8.
      model: a zoo name (default ``"patchflow"``, embedded: no download) or a :class:`Model`
        from :func:`load_model`.
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
    model: str | Model = _zoo.DEFAULT_STEREO_MODEL,
    weights: str | os.PathLike | None = None,
    *,
    batch_size: int | None = None,
) -> np.ndarray:
    """Estimate the disparity of a rectified stereo pair.

    Args:
      left, right: as ``image1``/``image2`` of :func:`estimate` (rectified pair).
      model: a zoo name (default ``"patchstereo"``, embedded) or a :class:`Model`.
      weights: weights for a model given by name (see :func:`load_model`).
      batch_size: split a batch into chunks of this many pairs.

    Returns:
      Disparity (H, W) float32 in pixels for the left view, ``right x = left x - d``
      (or (B, H, W) for batches).

    Warns:
      DisparityRangeWarning: more than 0.5 % of the estimate lies within 1 px of the
        model's ``maxdisp``: the scene probably has larger disparities, capped there.
    """
    a, b, batched = _prepare_pair(left, right, ("left", "right"))
    m = _model_for(model, weights, "stereo")
    disp = _run(m, a, b, batch_size)
    maxdisp = getattr(m.module, "maxdisp", None)
    if maxdisp is not None:
        fraction = capped_fraction(disp, float(maxdisp))
        if fraction > CAP_FRACTION:
            import warnings

            warnings.warn(DisparityRangeWarning(int(maxdisp), fraction), stacklevel=2)
    return disp if batched else disp[0]
