"""One optimisation step, and the state it updates (Flax imagenet's shape).

The train state is a plain dict ``{"params", "batch_stats", "opt_state", "step"}`` (what
the checkpoints store, leaf by leaf). :func:`create_train_state` builds it from a
configuration, :func:`train_step` is the pure function that :func:`flowlib.train.train`
jits over the device mesh::

    loss, grads = value_and_grad(loss_fn(module.apply(params, image1, image2, train=True), batch))
    params      = params + optimizer_update(grads)           (AdamW, optional frozen subtree)
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from flowlib.train.config import TrainConfig

__all__ = ["make_optimizer", "initial_variables", "create_train_state", "train_step"]

# "step" schedule: halve the learning rate at these fractions of training (FlowNet/CFNet).
STEP_SCHEDULE_MILESTONES = (0.6, 0.8, 0.9)


def make_optimizer(cfg: TrainConfig, params: Any) -> Any:
    """AdamW on ``cfg.schedule``; parameters whose path matches ``cfg.freeze`` get no update."""
    import optax

    if cfg.schedule == "constant":
        sched = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        sched = optax.warmup_cosine_decay_schedule(
            0.0, cfg.lr, max(1, cfg.warmup), max(cfg.steps, cfg.warmup + 1))
    elif cfg.schedule == "step":
        sched = optax.piecewise_constant_schedule(
            cfg.lr, {int(cfg.steps * f): 0.5 for f in STEP_SCHEDULE_MILESTONES})
    else:
        raise ValueError(f"schedule must be constant, cosine or step, got {cfg.schedule!r}")
    tx = optax.adamw(sched, b1=0.9, b2=0.999, weight_decay=cfg.weight_decay)
    if cfg.freeze:
        import jax

        rx = re.compile(cfg.freeze)

        def label(path: tuple, _: Any) -> str:
            name = "/".join(str(getattr(p, "key", p)) for p in path)
            return "freeze" if rx.search(name) else "train"

        labels = jax.tree_util.tree_map_with_path(label, params)
        tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
    return tx


def initial_variables(cfg: TrainConfig, module: Any, key: Any) -> dict[str, Any]:
    """``cfg.init``'s weights (name:variant or path), or ``module.init`` on a crop-sized pair."""
    import jax
    import jax.numpy as jnp

    if cfg.init:
        import flowlib

        model = flowlib.load_model(cfg.model, cfg.init)
        return jax.device_get(model.variables)
    x = jnp.zeros((1, *cfg.crop, 3), jnp.float32)
    # Jitted: eager init dispatches every layer of the forward pass on its own (SpyNet:
    # 3x the time of compiling it once).
    return jax.device_get(jax.jit(module.init)(key, x, x))


def create_train_state(cfg: TrainConfig, module: Any, key: Any) -> tuple[dict[str, Any], Any]:
    """``(state, optimizer)`` at step 0 (host arrays)."""
    variables = initial_variables(cfg, module, key)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    tx = make_optimizer(cfg, params)
    state = {"params": params, "batch_stats": batch_stats, "opt_state": tx.init(params),
             "step": np.zeros((), np.int32)}
    return state, tx


def train_step(module: Any, tx: Any, loss_fn: Callable[..., Any], state: dict[str, Any],
               batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One AdamW step on ``batch``; returns the new state and the loss metrics + ``grad_norm``.

    ``module``, ``tx`` and ``loss_fn`` are bound with ``functools.partial`` before ``jax.jit``.
    """
    import jax
    import optax

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
