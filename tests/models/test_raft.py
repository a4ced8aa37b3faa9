"""RAFT / RAFT-small: parity with torchvision (golden file, live with torch), the converter,
convex upsampling, padding, options, and the on-the-fly lookup inside the model."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks._torchvision import random_state_dict
from flowlib.convert import raft as convert_raft
from flowlib.models import raft
from tests.convert._torch_writer import write_torch_checkpoint
from tests.models import raft_parity


@functools.lru_cache(maxsize=None)
def _golden() -> dict[str, np.ndarray]:
    with np.load(raft_parity.GOLDEN) as z:
        return {k: z[k] for k in z.files}


@functools.lru_cache(maxsize=None)
def _state(model: str) -> dict[str, np.ndarray]:
    shapes = raft_parity.shapes_from_json(str(_golden()[f"{model}/shapes"]))
    return random_state_dict(shapes, raft_parity.MODELS[model])


@functools.lru_cache(maxsize=None)
def _apply(small: bool, iters: int, lookup: str = "auto", dtype=None):
    module = raft.RAFT(small=small, iters=iters, lookup=lookup, dtype=dtype)
    return jax.jit(module.apply)


def _flow(model: str, iters: int, image1, image2, lookup: str = "auto") -> np.ndarray:
    variables = convert_raft.convert_state_dict(_state(model))
    out = _apply(model == "raft_small", iters, lookup)(variables, jnp.asarray(image1),
                                                      jnp.asarray(image2))
    return np.asarray(out.flow)


@functools.lru_cache(maxsize=None)
def _apply_parity(small: bool):
    """The flows after each of :data:`raft_parity.ITERS` updates, as one jitted function (the
    encoders are compiled once for all the update counts)."""
    modules = {iters: raft.RAFT(small=small, iters=iters) for iters in raft_parity.ITERS}
    return jax.jit(lambda variables, image1, image2: {
        iters: m.apply(variables, image1, image2).flow for iters, m in modules.items()})


def _parity_flows(model: str, image1, image2) -> dict[int, np.ndarray]:
    """``{iters: flow}`` for :data:`raft_parity.ITERS`."""
    variables = convert_raft.convert_state_dict(_state(model))
    apply = _apply_parity(model == "raft_small")
    flows = apply(variables, jnp.asarray(image1), jnp.asarray(image2))
    return {iters: np.asarray(flow) for iters, flow in flows.items()}


# ----------------------------------------------------------------- parity with torchvision


@pytest.fixture(scope="module", params=sorted(raft_parity.MODELS))
def parity(request, data):
    """``(model, image1, image2, {iters: flow})``: our flows on the parity pairs. A
    parametrized module fixture, so pytest runs one model's parity tests one after the other
    (on one xdist worker, which compiles the model once)."""
    model = request.param
    image1, image2 = raft_parity.load_pairs(data)
    return model, image1, image2, _parity_flows(model, image1, image2)


@pytest.mark.data
def test_matches_torchvision_golden(parity):
    model, _, _, flows = parity
    for iters, flow in flows.items():
        flow = flow[:, :: raft_parity.STEP, :: raft_parity.STEP]
        want = _golden()[f"{model}/flow{iters}"]
        assert flow.shape == want.shape
        np.testing.assert_allclose(flow, want, rtol=0, atol=0.01)


@pytest.mark.data
@pytest.mark.torch
def test_matches_torchvision_live(parity):
    pytest.importorskip("torch")
    model, image1, image2, ours = parity
    flows = raft_parity.torchvision_flows(model, _state(model), image1, image2)
    for iters, want in flows.items():
        np.testing.assert_allclose(ours[iters], want, rtol=0, atol=0.01)
        # The stored file is what torchvision computes now.
        np.testing.assert_allclose(want[:, :: raft_parity.STEP, :: raft_parity.STEP],
                                   _golden()[f"{model}/flow{iters}"], rtol=0, atol=1e-3)


@pytest.mark.data
@pytest.mark.parametrize("lookup", ["on_the_fly", "hybrid"])
def test_lookups_without_the_volume_same_flow(data, lookup):
    image1, image2 = raft_parity.load_pairs(data)
    assert raft.resolve_lookup("auto", 1, *image1.shape[1:3]) == "volume"
    a = _flow("raft_small", 12, image1[:1], image2[:1])  # as test_bfloat16_close_to_float32's
    b = _flow("raft_small", 12, image1[:1], image2[:1], lookup=lookup)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


@pytest.mark.data
def test_bfloat16_close_to_float32(data):
    image1, image2 = raft_parity.load_pairs(data)
    variables = convert_raft.convert_state_dict(_state("raft_small"))
    f32 = _flow("raft_small", 12, image1[:1], image2[:1])  # as the lookup tests' reference
    bf16 = _apply(True, 12, "auto", "bfloat16")(variables, jnp.asarray(image1[:1]),
                                                 jnp.asarray(image2[:1])).flow
    assert bf16.dtype == jnp.float32
    epe = float(np.mean(np.linalg.norm(np.asarray(bf16) - f32, axis=-1)))
    assert 0 < epe < 0.05 * float(np.mean(np.linalg.norm(f32, axis=-1)))


def test_auto_lookup_by_size():
    # Padded 1/8 grids: 55x128 (volume 7040^2 < 2^28), 136x240 (volume 1.07e9 > 2^28,
    # level 1 32640 * 68 * 120 = 2.66e8 <= 2^28), 270x480 (level 1 4.3e9).
    assert raft.resolve_lookup("auto", 1, 440, 1024) == "volume"
    assert raft.resolve_lookup("auto", 1, 1080, 1920) == "hybrid"
    assert raft.resolve_lookup("auto", 2, 1080, 1920) == "on_the_fly"
    assert raft.resolve_lookup("auto", 1, 2160, 3840) == "on_the_fly"
    assert raft.resolve_lookup("auto", 1, 2048, 2048) == "on_the_fly"
    assert raft.resolve_lookup("volume", 1, 2160, 3840) == "volume"
    with pytest.raises(ValueError, match="lookup must be one of"):
        raft.resolve_lookup("lazy", 1, 64, 64)


# ----------------------------------------------------------------- converter


def test_converter_reads_a_torch_file(tmp_path):
    state = _state("raft_small")
    path = tmp_path / "raft_small_C_T_V2-01064c6d.pth"
    write_torch_checkpoint(path, state)
    variables, kwargs = convert_raft.convert_file(path)
    assert kwargs == {"small": True}
    direct = convert_raft.convert_state_dict(state)
    leaves = jax.tree_util.tree_leaves_with_path(variables)
    assert len(leaves) == len(jax.tree_util.tree_leaves(direct)) == len(
        [k for k in state if not k.endswith("num_batches_tracked")])
    for (_, got), want in zip(leaves, jax.tree_util.tree_leaves(direct)):
        np.testing.assert_array_equal(got, want)
    # A torch (O, I, kh, kw) kernel lands as (kh, kw, I, O).
    kernel = variables["params"]["update_block"]["flow_head"]["conv2"]["conv"]["kernel"]
    np.testing.assert_array_equal(kernel, np.transpose(state["update_block.flow_head.conv2.weight"],
                                                       (2, 3, 1, 0)))


def test_converter_maps_every_large_key():
    state = _state("raft")
    variables = convert_raft.convert_state_dict(state)
    assert not convert_raft.small_from_state(state)
    bn = variables["batch_stats"]["context_encoder"]["convnormrelu"]["norm"]["bn"]
    np.testing.assert_array_equal(bn["var"], state["context_encoder.convnormrelu.1.running_var"])
    n_params = sum(v.size for v in jax.tree_util.tree_leaves(variables["params"]))
    assert n_params == 5_257_536  # torchvision's num_params for raft_large


def test_converter_errors():
    state = dict(_state("raft_small"))
    del state["update_block.flow_head.conv2.bias"]
    with pytest.raises(ValueError, match="not filled"):
        convert_raft.convert_state_dict(state)
    with pytest.raises(ValueError, match="unexpected tensor 'foo.extra'"):
        convert_raft.convert_state_dict({**_state("raft_small"), "foo.extra": np.zeros(2)})
    with pytest.raises(ValueError, match="shape mismatches"):
        convert_raft.convert_state_dict(_state("raft_small"), small=False)


# ----------------------------------------------------------------- pieces


def test_convex_upsample_matches_naive():
    rng = np.random.default_rng(0)
    flow = rng.standard_normal((1, 3, 4, 2)).astype(np.float32)
    mask = rng.standard_normal((1, 3, 4, 576)).astype(np.float32)
    got = np.asarray(raft.convex_upsample(jnp.asarray(flow), jnp.asarray(mask)))
    want = np.zeros((1, 24, 32, 2))
    m = mask.reshape(1, 3, 4, 9, 8, 8).astype(np.float64)
    w = np.exp(m) / np.exp(m).sum(axis=3, keepdims=True)
    for y in range(3):
        for x in range(4):
            for i in range(8):
                for j in range(8):
                    for k in range(9):
                        yy, xx = y + k // 3 - 1, x + k % 3 - 1
                        if 0 <= yy < 3 and 0 <= xx < 4:
                            want[0, 8 * y + i, 8 * x + j] += w[0, y, x, k, i, j] * 8 * flow[0, yy, xx]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bilinear_upsample_hand_computed():
    # align_corners=True x8 of a 1x2 ramp (0, 1): column c of 16 gets c / 15, times 8.
    flow = jnp.asarray([[[[0.0, 0.0], [1.0, 2.0]]]])
    up = np.asarray(raft.bilinear_upsample(flow))
    assert up.shape == (1, 8, 16, 2)
    np.testing.assert_allclose(up[0, 3, :, 0], 8 * np.arange(16) / 15, rtol=1e-6)
    np.testing.assert_allclose(up[0, 0, :, 1], 16 * np.arange(16) / 15, rtol=1e-6)


def test_input_padding():
    assert raft.input_padding(436, 1024) == (2, 2, 0, 0)
    assert raft.input_padding(375, 1242) == (0, 1, 3, 3)
    assert raft.input_padding(20, 100) == (22, 22, 2, 2)  # at least 64 px each side
    assert raft.input_padding(128, 192) == (0, 0, 0, 0)


def test_any_size_and_options():
    rng = np.random.default_rng(3)
    x1 = jnp.asarray(rng.uniform(size=(1, 30, 45, 3)), jnp.float32)
    x2 = jnp.asarray(rng.uniform(size=(1, 30, 45, 3)), jnp.float32)
    variables = convert_raft.convert_state_dict(_state("raft_small"))
    out = _apply(True, 2)(variables, x1, x2)
    assert out.flow.shape == (1, 30, 45, 2)
    assert out.aux["low_res_flow"].shape == (1, 8, 8, 2)  # padded to 64 x 64
    assert np.isfinite(np.asarray(out.flow)).all()
    for bad in (0, -1, 2.5, True, "12"):
        with pytest.raises(ValueError, match="iters must be an int >= 1"):
            raft.RAFT(iters=bad).apply(variables, x1, x2)
    with pytest.raises(ValueError, match="lookup must be one of"):
        raft.RAFT(small=True, lookup="lazy").apply(variables, x1, x2)
    with pytest.raises(ValueError, match=r"image2 must have shape \(B, H, W, 3\)"):
        raft.RAFT(small=True).apply(variables, x1, x2[..., :2])


def test_train_outputs_every_update():
    rng = np.random.default_rng(4)
    x1 = jnp.asarray(rng.uniform(size=(1, 64, 64, 3)), jnp.float32)
    x2 = jnp.roll(x1, 2, axis=2)
    variables = convert_raft.convert_state_dict(_state("raft_small"))
    three, two = raft.RAFT(small=True, iters=3), raft.RAFT(small=True, iters=2)

    @jax.jit  # one compile for the three runs (eager, each layer would compile on its own)
    def run(variables, x1, x2):
        return (three.apply(variables, x1, x2, train=True).aux["flow_predictions"],
                three.apply(variables, x1, x2).flow, two.apply(variables, x1, x2).flow)

    preds, flow3, flow2 = run(variables, x1, x2)
    assert len(preds) == 3 and all(p.shape == (1, 64, 64, 2) for p in preds)
    # RAFT-small has no batch norm: the last training prediction is the inference flow.
    np.testing.assert_allclose(preds[-1], flow3, atol=1e-5)
    np.testing.assert_allclose(preds[1], flow2, atol=1e-5)  # update 2 of 3 = the 2-update run
