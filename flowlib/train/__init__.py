"""Training in JAX: data-parallel over every device, atomic checkpoints, exact resume.

``python -m flowlib.train MODEL --data synthetic|chairs|things|sintel|kitti ...`` (see
``__main__``) and :func:`train` run the same loop:

* Data: the batch of step ``s`` is a pure function of (seed, s): sample indices
  ``s * B + i`` and augmentation generators seeded with ``(seed, s, i)``. Batches are
  decoded/rendered ahead in threads. So a run killed and resumed from a checkpoint sees
  exactly the batches it would have seen, and reproduces the same loss curve.
* Parallelism: a 1-D mesh over all devices; each batch is sharded along it and the state
  is replicated, so XLA all-reduces the gradients (data parallelism via ``jax.sharding``).
  Under ``jax.distributed`` every process renders only its slice of each global batch.
* Checkpoints every N steps, atomic (temp file + rename), the newest three kept; the loss
  history travels inside them; ``curves.png`` and ``history.json`` are refreshed with each.
* At the end ``weights.npz`` (flowlib weight format, via :mod:`flowlib.train.export`) loads
  with ``flowlib.load_model``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from flowlib._files import atomic_open, atomic_write

__all__ = ["TrainConfig", "train"]


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in its checkpoints)."""

    model: str = "spynet"
    data: str = "synthetic"
    root: str | None = None
    steps: int = 1000
    batch_size: int = 8
    crop: tuple[int, int] = (256, 320)
    lr: float = 1e-4
    schedule: str = "cosine"
    warmup: int = 50
    weight_decay: float = 0.0
    seed: int = 0
    out: str = "runs/train"
    checkpoint_every: int = 200
    log_every: int = 10
    init: str | None = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    freeze: str | None = None
    workers: int = 2
    progress: bool = True
    photometric: bool = True

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the checkpoint."""
        d = dataclasses.asdict(self)
        for k in ("steps", "out", "checkpoint_every", "log_every", "workers", "progress"):
            d.pop(k)
        d["crop"] = list(d["crop"])
        return d


# ----------------------------------------------------------------------------- data


def _task(model: str) -> str:
    from flowlib import _zoo

    return _zoo.get(model).task


def _sample_source(cfg: TrainConfig, task: str) -> Callable[[int, np.random.Generator], dict[str, Any]]:
    """index, rng -> one un-augmented sample dict (images, flow/disparity, valid)."""
    from flowlib import data
    from flowlib.data import synthetic

    if cfg.data == "synthetic":
        h, w = int(cfg.crop[0] * 1.25), int(cfg.crop[1] * 1.25)
        if task == "flow":
            # data_kwargs["scene"]: "chairs" (flow_pair, default), "warp" (warp_pair),
            # "mix" (chairs and warp scenes, moving and nearly still, in turn) or "translation"
            # (translation_pair, a curriculum's first stage).
            kwargs = dict(cfg.data_kwargs)

            def mix(seed: int, h: int, w: int, **kw: Any) -> dict[str, np.ndarray]:
                # Half of the pairs barely move (motion / 20, ~0.1 px), chairs-like ones
                # among them: real footage is mostly still or slow, and a model that never
                # sees objects and edges that stay put invents motion from appearance
                # (measured: 1.2-1.4 px mean flow on two identical Middlebury frames).
                generator = synthetic.flow_pair if seed % 2 == 0 else synthetic.warp_pair
                if seed % 4 >= 2:
                    kw = {**kw, "motion": kw.get("motion", 1.0) / 20}
                return generator(seed, h, w, **kw)

            scenes = {"chairs": synthetic.flow_pair, "warp": synthetic.warp_pair, "mix": mix,
                      "translation": synthetic.translation_pair}
            scene = kwargs.pop("scene", "chairs")
            if scene not in scenes:
                raise ValueError(f"data_kwargs scene must be one of {sorted(scenes)}, got {scene!r}")

            def render(index: int, rng: np.random.Generator) -> dict[str, Any]:
                d = scenes[scene](cfg.seed * 1_000_003 + index, h, w, **kwargs)
                return {"image1": d["image1"], "image2": d["image2"], "flow": d["flow"],
                        "valid": np.ones(d["flow"].shape[:2], bool)}
        else:
            maxdisp = float(cfg.model_kwargs.get("maxdisp", 192))
            def render(index: int, rng: np.random.Generator) -> dict[str, Any]:
                kwargs = {"max_disparity": min(96.0, maxdisp / 2), **cfg.data_kwargs}
                d = synthetic.stereo_pair(cfg.seed * 1_000_003 + index, h, w, **kwargs)
                return {"image1": d["left"], "image2": d["right"], "disparity": d["disparity"],
                        "valid": np.ones(d["disparity"].shape, bool)}
        return render
    if cfg.root is None:
        raise ValueError(f"--data {cfg.data} needs --root (the dataset folder)")
    indexers = {
        ("chairs", "flow"): lambda r: data.index_flyingchairs(r),
        ("things", "flow"): lambda r: data.index_flyingthings3d(r, task="flow"),
        ("things", "stereo"): lambda r: data.index_flyingthings3d(r, task="stereo"),
        ("sintel", "flow"): lambda r: data.index_sintel(r, pass_="clean") + data.index_sintel(r, pass_="final"),
        ("kitti", "flow"): lambda r: data.index_kitti_flow(r),
        ("kitti", "stereo"): lambda r: data.index_kitti_stereo(r),
    }
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


def _batch_fn(cfg: TrainConfig, task: str, local_batch: int, offset: int) -> Callable[[int], dict[str, np.ndarray]]:
    from flowlib.data import transforms

    source = _sample_source(cfg, task)

    def make(step: int) -> dict[str, np.ndarray]:
        items = []
        for i in range(offset, offset + local_batch):
            rng = np.random.default_rng([cfg.seed, step, i])
            sample = source(step * cfg.batch_size + i, rng)
            items.append(transforms.augment(rng, sample, tuple(cfg.crop), photometric=cfg.photometric))
        return {k: np.stack([it[k] for it in items]) for k in items[0]}

    return make


# ----------------------------------------------------------------------------- optimisation


def _optimizer(cfg: TrainConfig, params: Any) -> Any:
    import optax

    if cfg.schedule == "constant":
        sched = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(1, cfg.warmup), max(cfg.steps, cfg.warmup + 1))
    elif cfg.schedule == "step":  # halve at 60 %, 80 % and 90 % of training (FlowNet/CFNet style)
        sched = optax.piecewise_constant_schedule(
            cfg.lr, {int(cfg.steps * f): 0.5 for f in (0.6, 0.8, 0.9)})
    else:
        raise ValueError(f"schedule must be constant, cosine or step, got {cfg.schedule!r}")
    tx = optax.adamw(sched, b1=0.9, b2=0.999, weight_decay=cfg.weight_decay)
    if cfg.freeze:
        import jax

        rx = re.compile(cfg.freeze)
        labels = jax.tree_util.tree_map_with_path(
            lambda path, _: "freeze" if rx.search("/".join(str(getattr(p, "key", p)) for p in path)) else "train",
            params)
        tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
    return tx


def _loss_fn(cfg: TrainConfig, module: Any) -> Callable[..., Any]:
    from flowlib import losses

    if cfg.model in ("flownets", "flownetc"):
        return lambda out, batch: losses.flownet_loss(out, batch, div_flow=float(getattr(module, "div_flow", 20.0)))
    if cfg.model == "cfnet":
        return lambda out, batch: losses.cfnet_loss(out, batch, maxdisp=float(module.maxdisp))
    return losses.LOSSES[cfg.model]


def _initial_variables(cfg: TrainConfig, module: Any, key: Any) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    if cfg.init:
        import flowlib

        model = flowlib.load_model(cfg.model, cfg.init)
        return jax.device_get(model.variables)
    x = jnp.zeros((1, *cfg.crop, 3), jnp.float32)
    return jax.device_get(module.init(key, x, x))


# ----------------------------------------------------------------------------- curves


def _write_curves(out: Path, history: list[dict[str, float]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not history:
        return
    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    steps = [h["step"] for h in history]
    for i, key in enumerate(("loss", "epe")):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(steps, [h.get(key, math.nan) for h in history])
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_open(out / "curves.png") as f:
        fig.savefig(f, format="png")
    atomic_write(out / "history.json", json.dumps(history).encode("utf-8"))


# ----------------------------------------------------------------------------- loop


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns {"history", "weights", "steps"}.

    Args:
      cfg: the run's configuration; ``cfg.out`` holds checkpoints/, curves.png,
        history.json and, at the end, weights.npz.

    Returns:
      dict with the loss history (list of {step, loss, epe, ...}) and the weights path.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from flowlib import __version__, _zoo
    from flowlib.data import prefetch
    from flowlib.train import _checkpoint

    entry = _zoo.get(cfg.model)
    task = entry.task
    module = entry.build(**cfg.model_kwargs)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"

    devices = jax.devices()
    if cfg.batch_size % len(devices):
        raise ValueError(f"batch size {cfg.batch_size} must be a multiple of the {len(devices)} devices")
    mesh = Mesh(np.array(devices), ("data",))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    variables = _initial_variables(cfg, module, jax.random.PRNGKey(cfg.seed))
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    tx = _optimizer(cfg, params)
    state = {"params": params, "batch_stats": batch_stats, "opt_state": tx.init(params),
             "step": np.zeros((), np.int32)}
    history: list[dict[str, float]] = []
    start_step = 0
    found = _checkpoint.latest(ckpt_dir)
    if found is not None:
        state, meta = _checkpoint.load(found, state)
        if meta.get("config") != cfg.identity():
            raise ValueError(f"{found} was written by a different run configuration; use another --out")
        start_step, history = int(meta["step"]), list(meta.get("history", []))
    state = jax.device_put(state, replicated)
    loss_fn = _loss_fn(cfg, module)

    def step_fn(state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        def objective(params: Any) -> tuple[jax.Array, Any]:
            variables = {"params": params}
            if state["batch_stats"]:
                variables["batch_stats"] = state["batch_stats"]
            output, updates = module.apply(variables, batch["image1"], batch["image2"], train=True,
                                           mutable=["batch_stats"])
            loss, metrics = loss_fn(output, batch)
            return loss, (metrics, updates)

        (_, (metrics, updates)), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        upd, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], upd),
               "batch_stats": updates.get("batch_stats", state["batch_stats"]),
               "opt_state": opt_state, "step": state["step"] + 1}
        metrics["grad_norm"] = optax.tree.norm(grads)
        return new, metrics

    step_jit = jax.jit(step_fn, in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
                       donate_argnums=(0,))
    nproc, rank = jax.process_count(), jax.process_index()
    local = cfg.batch_size // nproc
    make_batch = _batch_fn(cfg, task, local, rank * local)

    def to_global(batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return {k: jax.make_array_from_process_local_data(sharded, v) for k, v in batch.items()}

    def checkpoint(step: int) -> None:
        meta = {"step": step, "config": cfg.identity(), "history": history, "flowlib_version": __version__}
        if rank == 0:
            _checkpoint.save(ckpt_dir, state, meta)
            _write_curves(out, history)

    bar = None
    if cfg.progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start_step, unit="step", dynamic_ncols=True, desc=f"train {cfg.model}")
    t0, seen = time.perf_counter(), 0
    running: dict[str, float] = {}
    for step, batch in zip(range(start_step, cfg.steps),
                           prefetch(range(start_step, cfg.steps), make_batch, workers=cfg.workers, buffer=3)):
        state, metrics = step_jit(state, to_global(batch))
        seen += cfg.batch_size
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            running = {k: float(v) for k, v in jax.device_get(metrics).items()}
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            history.append({"step": step + 1, **running, "pairs_per_s": rate})
            if bar is not None:
                bar.set_postfix(loss=f"{running['loss']:.4g}", epe=f"{running.get('epe', math.nan):.3g}",
                                zero=f"{running.get('zero_epe', math.nan):.3g}", pairs_s=f"{rate:.2f}")
            elif rank == 0 and cfg.log_every > 0:  # no bar (logs, batch jobs): one line per log step
                print(f"step {step + 1}/{cfg.steps} loss {running['loss']:.4g} "
                      f"epe {running.get('epe', math.nan):.3g} (zero {running.get('zero_epe', math.nan):.3g}) "
                      f"{rate:.2f} pairs/s", flush=True)
        if bar is not None:
            bar.update(1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            checkpoint(step + 1)
    if bar is not None:
        bar.close()
    weights = out / "weights.npz"
    if rank == 0:
        from flowlib.train.export import export

        export(_checkpoint.latest(ckpt_dir), weights)
    return {"history": history, "weights": weights, "steps": cfg.steps}
