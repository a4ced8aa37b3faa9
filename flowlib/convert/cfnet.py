"""gallenszl/CFNet PyTorch checkpoints -> :class:`flowlib.models.cfnet.CFNet` variables.

Released files are ``torch.save({'epoch', 'model': DataParallel.state_dict(), 'optimizer'})``
(``main.py``), so the tensors sit under ``'model'`` with a ``module.`` prefix. The key
table below is written per upstream block; every checkpoint tensor is either mapped or
listed in :data:`IGNORED` / matched by :data:`IGNORED_PATTERN`, and every Flax leaf is
filled exactly once (:class:`~flowlib.convert._common.KeyMapper`).

Layouts: Conv2d/3d ``(O, I, *k)`` -> ``(*k, I, O)``; ConvTranspose3d ``(I, O, *k)`` ->
``(*k, I, O)`` (the layer flips it); BatchNorm ``weight/bias/running_mean/running_var`` ->
``scale/bias`` (params) and ``mean/var`` (batch_stats); the four range scalars
``gamma_s3, beta_s3, gamma_s2, beta_s2`` (shape (1,)) as they are.

``maxdisp`` is not stored in the weights (no parameter depends on it); every upstream
script and both released checkpoints use 256, the default here.

Only the full-width network exists upstream: a reduced-width ``CFNet(channel_divisor=n)``
(``n > 1``) is flowlib's own and its weights live in flowlib ``.npz`` files (whose metadata
records ``channel_divisor``); asking for ``channel_divisor != 1`` here, or passing a
narrower state dict, is refused with a ``ValueError`` that says so.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from flowlib.convert._common import KeyMapper, conv_kernel, conv_transpose_kernel, strip_prefix

__all__ = ["convert_state_dict", "convert_file", "key_table", "unwrap", "IGNORED",
           "IGNORED_PATTERN"]

DEFAULT_MAXDISP = 256
#: Output channels of ``feature_extraction.firstconv.0`` in the full-width network.
_FIRST_WIDTH = 32

#: ``hourglassup.combine3`` and ``redir3`` are registered but never called by upstream's
#: forward (680,448 values); the port has no such parameters.
IGNORED = (
    "combine1.combine3.0.0.weight",
    "combine1.combine3.0.1.weight",
    "combine1.combine3.0.1.bias",
    "combine1.combine3.0.1.running_mean",
    "combine1.combine3.0.1.running_var",
    "combine1.redir3.0.weight",
    "combine1.redir3.1.weight",
    "combine1.redir3.1.bias",
    "combine1.redir3.1.running_mean",
    "combine1.redir3.1.running_var",
)
#: BatchNorm step counters (unused in eval; Flax keeps none).
IGNORED_PATTERN = r".*\.num_batches_tracked"

Row = tuple[str, str, str]  # (torch prefix, flax path, kind)


def _conv(t: str, f: str) -> list[Row]:
    """``nn.Conv2d/3d`` without bias -> ``_layers.Conv`` (its inner ``nn.Conv`` is "conv")."""
    return [(t, f"{f}/conv", "conv")]


def _convbn(t: str, f: str) -> list[Row]:
    """``convbn`` / ``convbn_3d`` = Sequential(conv, BN) -> ``ConvBN``."""
    return [(f"{t}.0", f"{f}/conv/conv", "conv"), (f"{t}.1", f"{f}/bn/bn", "bn")]


def _deconvbn(t: str, f: str) -> list[Row]:
    """Sequential(ConvTranspose3d, BatchNorm3d) -> ``DeconvBN``."""
    return [(f"{t}.0", f"{f}/deconv", "convT"), (f"{t}.1", f"{f}/bn/bn", "bn")]


def _basic_block(t: str, f: str) -> list[Row]:
    """``layerN`` = Sequential(BasicBlock): conv1 = Sequential(convbn, Mish)."""
    return (_convbn(f"{t}.0.conv1.0", f"{f}/conv1") + _convbn(f"{t}.0.conv2", f"{f}/conv2")
            + _convbn(f"{t}.0.downsample", f"{f}/downsample"))


def _head(t: str, f: str) -> list[Row]:
    """``gwN`` / ``concatN`` / ``classif*``: Sequential(convbn, Mish, conv) -> convbn, proj."""
    return _convbn(f"{t}.0", f"{f}/convbn") + _conv(f"{t}.2", f"{f}/proj")


def _pair(t: str, f: str) -> list[Row]:
    """``dres*`` / ``confidence0/1_*``: Sequential(convbn_3d, Mish, convbn_3d[, Mish])."""
    return _convbn(f"{t}.0", f"{f}/conv_0") + _convbn(f"{t}.2", f"{f}/conv_1")


def _hourglass(t: str, f: str) -> list[Row]:
    rows = []
    for i in (1, 2, 3, 4):  # Sequential(convbn_3d, Mish)
        rows += _convbn(f"{t}.conv{i}.0", f"{f}/conv{i}")
    for i in (5, 6):
        rows += _deconvbn(f"{t}.conv{i}", f"{f}/conv{i}")
    for i in (1, 2):
        rows += _convbn(f"{t}.redir{i}", f"{f}/redir{i}")
    return rows


def _hourglass_up(t: str, f: str) -> list[Row]:
    rows = _conv(f"{t}.conv1", f"{f}/conv1") + _conv(f"{t}.conv3", f"{f}/conv3")
    for name in ("conv2", "conv4", "combine1", "combine2"):  # Sequential(convbn_3d, Mish)
        rows += _convbn(f"{t}.{name}.0", f"{f}/{name}")
    for name in ("conv8", "conv9"):
        rows += _deconvbn(f"{t}.{name}", f"{f}/{name}")
    for name in ("redir1", "redir2"):
        rows += _convbn(f"{t}.{name}", f"{f}/{name}")
    return rows


def _stage(s: str, f: str) -> list[Row]:
    """Cascade stage ``s`` ("s3"/"s2"): flat upstream names -> one ``CascadeStage``."""
    return (_pair(f"confidence0_{s}", f"{f}/confidence0")
            + _pair(f"confidence1_{s}", f"{f}/confidence1")
            + _hourglass(f"confidence2_{s}", f"{f}/confidence2")
            + _hourglass(f"confidence3_{s}", f"{f}/confidence3")
            + _head(f"confidence_classif0_{s}", f"{f}/classif0")
            + _head(f"confidence_classif1_{s}", f"{f}/classif1")
            + _head(f"confidence_classifmid_{s}", f"{f}/classifmid"))


def _feature_extraction(t: str, f: str) -> list[Row]:
    rows = []
    for i in range(3):  # Sequential(convbn, Mish, convbn, Mish, convbn, Mish)
        rows += _convbn(f"{t}.firstconv.{2 * i}", f"{f}/firstconv_{i}")
    for level in range(2, 7):
        rows += _basic_block(f"{t}.layer{level}", f"{f}/layer{level}")
    for i in range(4):
        rows += _convbn(f"{t}.pyramid_pooling.path_module_list.{i}.cbr_unit",
                        f"{f}/pyramid_pooling/path_{i}")
    for level in (5, 4, 3, 2):  # upconv = Sequential(Upsample, convbn, Mish)
        rows += _convbn(f"{t}.upconv{level + 1}.1", f"{f}/upconv{level + 1}")
        rows += _convbn(f"{t}.iconv{level}.0", f"{f}/iconv{level}")
    for level in range(2, 7):
        rows += _head(f"{t}.gw{level}", f"{f}/gw{level}")
    for level in range(2, 7):
        rows += _head(f"{t}.concat{level}", f"{f}/concat{level}")
    return rows


def key_table() -> list[Row]:
    """Every mapped tensor group as ``(torch prefix, flax path, kind)``; kind is one of
    ``conv``, ``convT``, ``bn``, ``param`` (see :func:`convert_state_dict`)."""
    rows = [(name, name, "param") for name in ("gamma_s3", "beta_s3", "gamma_s2", "beta_s2")]
    rows += _feature_extraction("feature_extraction", "feature_extraction")
    for name in ("dres0", "dres1", "dres0_5", "dres1_5", "dres0_6", "dres1_6"):
        rows += _pair(name, name)
    rows += _hourglass_up("combine1", "combine1")
    rows += _hourglass("dres3", "dres3")
    rows += _stage("s3", "stage_s3") + _stage("s2", "stage_s2")
    for name in ("classif0", "classif1", "classif2"):
        rows += _head(name, name)
    return rows


def unwrap(obj: Any) -> Mapping[str, Any]:
    """The state dict inside a checkpoint object (``{'model': ...}``, ``{'state_dict': ...}``
    or the bare dict), with the ``module.`` prefix of ``nn.DataParallel`` removed."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                return strip_prefix(obj[key], "module.")
        if obj and all(isinstance(k, str) for k in obj):
            return strip_prefix(obj, "module.")
    raise ValueError(
        "expected a CFNet checkpoint: a dict with a 'model' (or 'state_dict') entry holding "
        f"the state dict, or the state dict itself; got {type(obj).__name__}"
    )


def _check_full_width(source: Mapping[str, np.ndarray], channel_divisor: int) -> None:
    """Refuse reduced-width CFNets (requested or found in the state dict) with a clear
    message instead of a list of shape mismatches."""
    hint = ("gallenszl/CFNet checkpoints are the full-width network (channel_divisor=1); a "
            "reduced-width CFNet(channel_divisor > 1) has no PyTorch counterpart, so load its "
            "flowlib .npz weights instead")
    if channel_divisor != 1:
        raise ValueError(f"cannot convert for channel_divisor={channel_divisor!r}: {hint}")
    key = "feature_extraction.firstconv.0.0.weight"
    first = source.get(key)
    if first is not None and first.ndim == 4 and first.shape[0] != _FIRST_WIDTH:
        raise ValueError(
            f"{key} has {first.shape[0]} output channels, the full-width CFNet has "
            f"{_FIRST_WIDTH} (this looks like channel_divisor={_FIRST_WIDTH / first.shape[0]:g}): "
            f"{hint}")


@functools.lru_cache(maxsize=4)
def _expected_tree(maxdisp: int) -> Any:
    from flowlib.models.cfnet import CFNet

    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    return jax.eval_shape(lambda: CFNet(maxdisp=maxdisp).init(jax.random.PRNGKey(0), x, x))


def convert_state_dict(state: Mapping[str, Any], *, maxdisp: int = DEFAULT_MAXDISP,
                       channel_divisor: int = 1) -> dict:
    """CFNet state dict (numpy arrays, any of the layouts :func:`unwrap` accepts) -> variables.

    Args:
      state: the checkpoint's state dict or the whole checkpoint dict.
      maxdisp: the model's maximum disparity (not recorded in the weights).
      channel_divisor: must be 1 (upstream checkpoints are full width); accepted so that
        a model's keyword arguments can be passed through.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` for ``CFNet(maxdisp=maxdisp)``.

    Raises:
      ValueError: ``channel_divisor != 1`` or a reduced-width state dict; a tensor is
        missing, left over, or has the wrong shape.
    """
    source = {k: np.asarray(v) for k, v in unwrap(state).items()}
    _check_full_width(source, channel_divisor)
    mapper = KeyMapper(source, ignore=IGNORED, ignore_pattern=IGNORED_PATTERN)
    for t, f, kind in key_table():
        if kind == "param":
            mapper.take(t, f"params/{f}")
        elif kind == "conv":
            mapper.take(f"{t}.weight", f"params/{f}/kernel", conv_kernel)
        elif kind == "convT":
            mapper.take(f"{t}.weight", f"params/{f}/kernel", conv_transpose_kernel)
        else:  # bn
            mapper.take(f"{t}.weight", f"params/{f}/scale")
            mapper.take(f"{t}.bias", f"params/{f}/bias")
            mapper.take(f"{t}.running_mean", f"batch_stats/{f}/mean")
            mapper.take(f"{t}.running_var", f"batch_stats/{f}/var")
    return mapper.finish(_expected_tree(maxdisp))


def convert_file(path: str | os.PathLike, *, maxdisp: int = DEFAULT_MAXDISP,
                 channel_divisor: int = 1) -> tuple[dict, dict]:
    """Read a CFNet ``.ckpt`` / ``.tar`` / ``.pth`` file (no torch needed) and convert it.

    Args:
      path: the checkpoint file.
      maxdisp, channel_divisor: as :func:`convert_state_dict` (``channel_divisor`` must be 1).

    Returns:
      ``(variables, model_kwargs)`` with ``model_kwargs = {"maxdisp": maxdisp}``.
    """
    from flowlib.convert._torch import read_torch_checkpoint

    obj = read_torch_checkpoint(path)
    try:
        variables = convert_state_dict(obj, maxdisp=maxdisp, channel_divisor=channel_divisor)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    return variables, {"maxdisp": maxdisp}
