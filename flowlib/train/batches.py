"""Training batches: the batch of step ``s`` is a pure function of (seed, s).

A *sample source* maps ``(index, rng)`` to one un-augmented sample dict (``image1``,
``image2``, ``flow`` or ``disparity``, ``valid``): procedural scenes rendered from a seed
(:func:`synthetic_flow_source`, :func:`synthetic_stereo_source`) or a dataset indexed from
disk (:func:`dataset_source`). :func:`batch_builder` turns a source into ``step -> batch``:
sample ``s * B + i`` with augmentation generator ``default_rng([seed, s, i])``, so a run that
is killed and resumed sees exactly the batches it would have seen.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from flowlib.train.config import TrainConfig

__all__ = [
    "SampleSource",
    "sample_source",
    "synthetic_flow_source",
    "synthetic_stereo_source",
    "dataset_source",
    "mixed_flow_pair",
    "batch_builder",
]

SampleSource = Callable[[int, np.random.Generator], dict[str, Any]]

# Synthetic scenes are rendered this much larger than the crop, so that random crops,
# scales and flips of them still cover the crop.
RENDER_MARGIN = 1.25
# Scene seeds of different run seeds must not overlap: scene = seed * SEED_STRIDE + index
# (a prime well above any number of samples a run draws).
SEED_STRIDE = 1_000_003
# "mix" scenes: every other pair of each chairs/warp couple nearly still (motion / 20, ~0.1 px).
STILL_MOTION_DIVISOR = 20
# Synthetic stereo: the scene's largest disparity is half the model's range, at most 96 px.
STEREO_MAX_DISPARITY = 96.0
# maxdisp assumed for the synthetic disparity range when model_kwargs does not give one
# (the value the first CFNet runs used; CFNet's own default is 256).
STEREO_DEFAULT_MAXDISP = 192


def mixed_flow_pair(seed: int, h: int, w: int, **kwargs: Any) -> dict[str, np.ndarray]:
    """Chairs and warp scenes in turn, half of them barely moving (``scene="mix"``).

    Real footage is mostly still or slow, and a model that never sees objects and edges that
    stay put invents motion from appearance (measured: 1.2-1.4 px mean flow on two identical
    Middlebury frames). ``seed % 2`` picks the generator, ``seed % 4 >= 2`` the still pairs.
    """
    from flowlib.data import synthetic

    generator = synthetic.flow_pair if seed % 2 == 0 else synthetic.warp_pair
    if seed % 4 >= 2:
        kwargs = {**kwargs, "motion": kwargs.get("motion", 1.0) / STILL_MOTION_DIVISOR}
    return generator(seed, h, w, **kwargs)


def _flow_scenes() -> dict[str, Callable[..., dict[str, np.ndarray]]]:
    from flowlib.data import synthetic

    return {"chairs": synthetic.flow_pair, "warp": synthetic.warp_pair, "mix": mixed_flow_pair,
            "translation": synthetic.translation_pair}


def _render_size(cfg: TrainConfig) -> tuple[int, int]:
    return int(cfg.crop[0] * RENDER_MARGIN), int(cfg.crop[1] * RENDER_MARGIN)


def synthetic_flow_source(cfg: TrainConfig) -> SampleSource:
    """Procedural flow pairs; ``data_kwargs["scene"]`` picks the generator.

    Scenes: ``"chairs"`` (``synthetic.flow_pair``, the default), ``"warp"`` (``warp_pair``),
    ``"mix"`` (:func:`mixed_flow_pair`) or ``"translation"`` (``translation_pair``, a
    curriculum's first stage). The other ``data_kwargs`` go to the generator.
    """
    scenes = _flow_scenes()
    kwargs = dict(cfg.data_kwargs)
    scene = kwargs.pop("scene", "chairs")
    if scene not in scenes:
        raise ValueError(f"data_kwargs scene must be one of {sorted(scenes)}, got {scene!r}")
    generate, (h, w) = scenes[scene], _render_size(cfg)

    def render(index: int, rng: np.random.Generator) -> dict[str, Any]:
        d = generate(cfg.seed * SEED_STRIDE + index, h, w, **kwargs)
        return {"image1": d["image1"], "image2": d["image2"], "flow": d["flow"],
                "valid": np.ones(d["flow"].shape[:2], bool)}

    return render


def synthetic_stereo_source(cfg: TrainConfig) -> SampleSource:
    """Procedural stereo pairs (``synthetic.stereo_pair``); ``data_kwargs`` override the range."""
    from flowlib.data import synthetic

    maxdisp = float(cfg.model_kwargs.get("maxdisp", STEREO_DEFAULT_MAXDISP))
    kwargs = {"max_disparity": min(STEREO_MAX_DISPARITY, maxdisp / 2), **cfg.data_kwargs}
    h, w = _render_size(cfg)

    def render(index: int, rng: np.random.Generator) -> dict[str, Any]:
        d = synthetic.stereo_pair(cfg.seed * SEED_STRIDE + index, h, w, **kwargs)
        return {"image1": d["left"], "image2": d["right"], "disparity": d["disparity"],
                "valid": np.ones(d["disparity"].shape, bool)}

    return render


def _indexers() -> dict[tuple[str, str], Callable[[str], list[Any]]]:
    from flowlib import data

    return {
        ("chairs", "flow"): data.index_flyingchairs,
        ("things", "flow"): lambda r: data.index_flyingthings3d(r, task="flow"),
        ("things", "stereo"): lambda r: data.index_flyingthings3d(r, task="stereo"),
        ("sintel", "flow"): lambda r: (data.index_sintel(r, pass_="clean")
                                       + data.index_sintel(r, pass_="final")),
        ("kitti", "flow"): data.index_kitti_flow,
        ("kitti", "stereo"): data.index_kitti_stereo,
    }


def dataset_source(cfg: TrainConfig, task: str) -> SampleSource:
    """Samples with ground truth under ``cfg.root``, drawn uniformly with the step's rng."""
    from flowlib import data

    if cfg.root is None:
        raise ValueError(f"--data {cfg.data} needs --root (the dataset folder)")
    indexers = _indexers()
    if (cfg.data, task) not in indexers:
        raise ValueError(f"--data {cfg.data} has no {task} ground truth; choose from "
                         f"{sorted(d for d, t in indexers if t == task)} or synthetic")
    samples = [s for s in indexers[(cfg.data, task)](cfg.root) if s.target is not None]
    if not samples:
        raise ValueError(f"no training samples with ground truth under {cfg.root}")

    def load(index: int, rng: np.random.Generator) -> dict[str, Any]:
        d = data.load_sample(samples[int(rng.integers(len(samples)))])
        if "invalid" in d:
            d["valid"] = d["valid"] & ~d.pop("invalid")
        return {k: d[k] for k in ("image1", "image2", "flow", "disparity", "valid") if k in d}

    return load


def sample_source(cfg: TrainConfig, task: str) -> SampleSource:
    """The source ``cfg.data`` names, for a ``"flow"`` or ``"stereo"`` model."""
    if cfg.data != "synthetic":
        return dataset_source(cfg, task)
    return synthetic_flow_source(cfg) if task == "flow" else synthetic_stereo_source(cfg)


def batch_builder(cfg: TrainConfig, task: str, local_batch: int,
                  offset: int) -> Callable[[int], dict[str, np.ndarray]]:
    """``step -> batch`` of this process's ``local_batch`` samples, starting at ``offset``."""
    from flowlib.data import transforms

    source = sample_source(cfg, task)

    def make(step: int) -> dict[str, np.ndarray]:
        items = []
        for i in range(offset, offset + local_batch):
            rng = np.random.default_rng([cfg.seed, step, i])
            sample = source(step * cfg.batch_size + i, rng)
            items.append(transforms.augment(rng, sample, tuple(cfg.crop), photometric=cfg.photometric))
        return {k: np.stack([it[k] for it in items]) for k in items[0]}

    return make
