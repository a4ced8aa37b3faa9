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
* Code: :mod:`~flowlib.train.config` (:class:`TrainConfig`, the command line generated from
  its fields), :mod:`~flowlib.train.batches` (sample sources, the step -> batch builder),
  :mod:`~flowlib.train.step` (optimizer, :func:`~flowlib.train.step.create_train_state`,
  :func:`~flowlib.train.step.train_step`), :mod:`~flowlib.train.export`; :func:`train` here
  wires them to the device mesh, checkpoints and logs.
* Checkpoints every N steps, atomic (temp file + rename), the newest three kept; the loss
  history travels inside them; ``curves.png`` and ``history.json`` are refreshed with each.
* At the end ``weights.npz`` (flowlib weight format, via :mod:`flowlib.train.export`) loads
  with ``flowlib.load_model``.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from flowlib._files import atomic_open, atomic_write
from flowlib.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


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


def _resumable(cfg: TrainConfig, ckpt_dir: Path) -> Path | None:
    """The newest checkpoint in ``ckpt_dir`` (None if there is none), checked to be this run's.

    Only its metadata is read, so a damaged checkpoint or another run's configuration is
    refused before the model is initialised and compiled.
    """
    from flowlib.train import _checkpoint

    found = _checkpoint.latest(ckpt_dir)
    if found is not None and _checkpoint.meta(found).get("config") != cfg.identity():
        raise ValueError(f"{found} was written by a different run configuration; use another --out")
    return found


def _restore(found: Path | None, state: dict[str, Any]) -> tuple[dict[str, Any], int, list]:
    """The state, step and history of checkpoint ``found`` (``state`` itself at step 0)."""
    from flowlib.train import _checkpoint

    if found is None:
        return state, 0, []
    state, meta = _checkpoint.load(found, state)
    return state, int(meta["step"]), list(meta.get("history", []))


class _Log:
    """Progress bar (or one line per log step) and the loss history."""

    def __init__(self, cfg: TrainConfig, start_step: int, history: list, *, rank0: bool) -> None:
        self.cfg, self.history, self.bar = cfg, history, None
        self.print_lines = rank0 and cfg.log_every > 0
        if cfg.progress and rank0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=cfg.steps, initial=start_step, unit="step", dynamic_ncols=True,
                            desc=f"train {cfg.model}")
        self.t0, self.seen = time.perf_counter(), 0

    def step(self, step: int, metrics: Any) -> None:
        import jax

        cfg = self.cfg
        self.seen += cfg.batch_size
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            running = {k: float(v) for k, v in jax.device_get(metrics).items()}
            rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
            self.history.append({"step": step + 1, **running, "pairs_per_s": rate})
            epe, zero = running.get("epe", math.nan), running.get("zero_epe", math.nan)
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{running['loss']:.4g}", epe=f"{epe:.3g}",
                                     zero=f"{zero:.3g}", pairs_s=f"{rate:.2f}")
            elif self.print_lines:  # no bar (logs, batch jobs): one line per log step
                print(f"step {step + 1}/{cfg.steps} loss {running['loss']:.4g} epe {epe:.3g} "
                      f"(zero {zero:.3g}) {rate:.2f} pairs/s", flush=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns {"history", "weights", "steps"}.

    Args:
      cfg: the run's configuration; ``cfg.out`` holds checkpoints/, curves.png,
        history.json and, at the end, weights.npz.

    Returns:
      dict with the loss history (list of {step, loss, epe, ...}) and the weights path.
    """
    import jax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from flowlib import __version__, _zoo
    from flowlib.data import prefetch
    from flowlib.train import _checkpoint
    from flowlib.train.batches import batch_builder
    from flowlib.train.step import create_train_state, train_step

    spec = _zoo.spec(cfg.model)
    module = spec.build(**cfg.model_kwargs)
    loss = spec.training_loss(module)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    devices = jax.devices()
    if cfg.batch_size % len(devices):
        raise ValueError(f"batch size {cfg.batch_size} must be a multiple of the {len(devices)} devices")
    mesh = Mesh(np.array(devices), ("data",))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    found = _resumable(cfg, ckpt_dir)
    state, tx = create_train_state(cfg, module, jax.random.PRNGKey(cfg.seed))
    state, start_step, history = _restore(found, state)
    state = jax.device_put(state, replicated)
    step_fn = jax.jit(functools.partial(train_step, module, tx, loss),
                      in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
                      donate_argnums=(0,))
    nproc, rank = jax.process_count(), jax.process_index()
    local = cfg.batch_size // nproc
    make_batch = batch_builder(cfg, spec.task, local, rank * local)
    steps = range(start_step, cfg.steps)
    log = _Log(cfg, start_step, history, rank0=rank == 0)
    for step, batch in zip(steps, prefetch(steps, make_batch, workers=cfg.workers, buffer=3)):
        batch = {k: jax.make_array_from_process_local_data(sharded, v) for k, v in batch.items()}
        state, metrics = step_fn(state, batch)
        log.step(step, metrics)
        if ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps) and rank == 0:
            meta = {"step": step + 1, "config": cfg.identity(), "history": history,
                    "flowlib_version": __version__}
            _checkpoint.save(ckpt_dir, state, meta)
            _write_curves(out, history)
    log.close()
    weights = out / "weights.npz"
    if rank == 0:
        from flowlib.train.export import export

        export(_checkpoint.latest(ckpt_dir), weights)
    return {"history": history, "weights": weights, "steps": cfg.steps}
