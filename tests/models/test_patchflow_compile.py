"""How PatchFlow / PatchStereo compile their stages on the first call at a new size."""

from __future__ import annotations

import functools

import jax
import numpy as np
from scipy.ndimage import gaussian_filter

from flowlib import _compilation_cache
from flowlib.models.patchflow import PatchFlow, patchflow


def test_every_stage_compile_starts_from_shapes_before_any_stage_runs(tmp_path, monkeypatch):
    """The first call at a new size announces each stage's compile from the input shapes
    alone (``ShapeDtypeStruct`` arguments: the stages are planned before the first one
    runs, so their compiles run side by side); a second call at that size compiles
    nothing and gives the same output. (PatchStereo plans through the same code: every
    stereo test's first call at its size runs its plan.)"""
    run, config = patchflow, PatchFlow(iterations=2, propagation_rounds=1, refine_outer=1,
                                       refine_inner=1, min_coarse_side=16)
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    rng = np.random.default_rng(3)
    a = rng.random((1, 37, 53, 3), np.float32)  # a size no other test compiles
    b = np.roll(a, 2, axis=2)
    heard = []
    with _compilation_cache.announcing(lambda args: heard.append(args)):
        first = run(a, b, config)
    # pyramids; level 1's search and refinement; level 0's upsampling and refinement (its
    # flow is the output, at the input size: no stage of its own)
    assert len(heard) == 5
    leaves = [x for args in heard for x in jax.tree_util.tree_leaves(args)]
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    heard.clear()
    with _compilation_cache.announcing(lambda args: heard.append(args)):
        second = run(a, b, config)
    assert heard == []
    for x, y in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
        np.testing.assert_array_equal(x, y)


def test_a_new_process_loads_every_stage_through_the_index_without_lowering(tmp_path, monkeypatch):
    """The stages' executables are indexed by function, settings and shapes, however quickly
    they compiled: once a process has compiled them, a new one (the stage table and plans
    emptied) loads every stage without lowering it and gives the same output."""
    from flowlib.models import patchflow as module

    config = PatchFlow(iterations=2, propagation_rounds=1, refine_outer=1, refine_inner=1,
                       min_coarse_side=16)
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    rng = np.random.default_rng(4)
    a = rng.random((1, 35, 51, 3), np.float32)  # a size no other test compiles
    b = np.roll(a, 2, axis=2)
    first = patchflow(a, b, config).flow
    assert len(list(tmp_path.rglob("patchflow-*.index"))) == 5
    monkeypatch.setattr(module, "_STAGES", {})
    monkeypatch.setattr(module, "_PLANNED", set())
    lowered = []
    real = _compilation_cache.CachedFunction._file
    monkeypatch.setattr(
        _compilation_cache.CachedFunction, "_file",
        lambda self, low, folder: lowered.append(self._name) or real(self, low, folder))
    second = patchflow(a, b, config).flow
    assert lowered == []
    np.testing.assert_array_equal(first, second)


def test_each_stage_compiles_at_the_llvm_level_its_size_calls_for():
    """Searches and refinements of small levels (flow: up to 10,000 pixels, stereo: up to
    40,000) compile at LLVM -O1; larger searches at -O2, larger refinements at XLA's -O3 (no
    option); the pyramids and the canvas steps at -O1. A refinement compiled at -O1 agrees
    with -O3's to float rounding."""
    from flowlib.models import patchflow as module

    def level(fn, *shape, horizontal=False):
        return module._cpu_optimisation_level(fn, (jax.ShapeDtypeStruct(shape, np.float32),),
                                              {"horizontal": horizontal})

    assert level(module._search_level, 1, 100, 100) == 1
    assert level(module._search_level, 1, 120, 160) == 2
    assert level(module._search_level, 1, 240, 320) == 2
    assert level(module._search_level, 2, 93, 310, horizontal=True) == 1
    assert level(module._search_level, 2, 187, 621, horizontal=True) == 2
    assert level(module.refine_warped, 1, 100, 100) == 1
    assert level(module.refine_warped, 1, 101, 100) == 3
    assert level(module.refine_warped, 2, 93, 310, horizontal=True) == 1
    assert level(module.refine_warped, 2, 187, 621, horizontal=True) == 3
    assert level(module._upsample_level, 1, 30, 40) == 3
    assert level(module._grey_pyramids, 1, 480, 640, 3) == 1
    assert level(module._next_level, 1, 120, 160, 2) == 1
    assert level(module._crop, 1, 480, 640, 2) == 1
    assert module._compiler_options(1)["xla_backend_optimization_level"] == 1
    assert "xla_backend_optimization_level" not in module._compiler_options(3)

    rng = np.random.default_rng(5)
    a, warped = (rng.random((1, 40, 56), np.float32) for _ in range(2))
    flow = rng.normal(size=(1, 40, 56, 2)).astype(np.float32)
    refine = jax.jit(functools.partial(module.refine_warped, alpha=20.0, delta=5.0, gamma=10.0,
                                       inner=2, outer=2, horizontal=False))
    lowered = refine.lower(a, warped, flow)
    o1, o3 = (np.asarray(lowered.compile(module._compiler_options(lvl))(a, warped, flow))
              for lvl in (1, 3))
    np.testing.assert_allclose(o1, o3, atol=1e-5)


def test_the_coarse_levels_share_one_compiled_search_and_refinement(tmp_path, monkeypatch):
    """Where the coarse levels are small, they run on the canvas of the finest of them: a
    first call compiles one search and one refinement for the three searched levels (7
    compiles, not 9), and each level's flow in ``aux["levels"]`` has that level's own size.
    (``test_jit_equals_eager...`` compares a canvas's stages with one jitted function.)"""
    from flowlib.models import patchflow as module

    config = PatchFlow(iterations=2, propagation_rounds=1, refine_outer=1, refine_inner=1,
                       min_coarse_side=8, coarse_radius=2)
    h, w = 70, 93  # levels 3 (8 x 11, the coarsest), 2 (17 x 23), 1 (35 x 46), then full size
    assert module._coarse_canvas(h, w, 3, config, config.finest_level) == 3
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    rng = np.random.default_rng(6)
    a = gaussian_filter(rng.random((1, h, w, 3)), (0, 1.5, 1.5, 0)).astype(np.float32)
    b = np.roll(a, (1, 3), axis=(1, 2))  # a size no other test compiles
    heard = []
    with _compilation_cache.announcing(lambda args: heard.append(args)):
        staged = patchflow(a, b, config)
    # pyramids, the shared search and refinement, two canvas steps (levels 3 -> 2 and
    # 2 -> 1), level 0's upsampling and refinement
    assert len(heard) == 7
    assert {k: v.shape for k, v in staged.aux["levels"].items()} == {
        3: (1, 8, 11, 2), 2: (1, 17, 23, 2), 1: (1, 35, 46, 2), 0: (1, h, w, 2)}


def test_which_coarse_levels_share_a_canvas():
    """The canvas spans the coarsest levels up to the last searched one of at most 40,000
    pixels with the same propagation jumps; one level alone is no canvas."""
    from flowlib.models import patchflow as module
    from flowlib.models.patchflow import PatchStereo

    canvas, flow, stereo = module._coarse_canvas, PatchFlow(), PatchStereo()
    assert canvas(480, 640, 4, flow, 1) == 3  # levels 4 .. 2: up to 120 x 160
    assert canvas(436, 1024, 4, flow, 1) == 3  # up to 109 x 256
    assert canvas(720, 1280, 5, flow, 1) == 3  # up to 90 x 160 (180 x 320 is larger)
    assert canvas(1080, 1920, 6, flow, 1) == 3  # up to 135 x 240 (long jumps: 3 levels)
    assert canvas(375, 1242, 3, stereo, 1) == 2  # levels 3, 2: up to 93 x 310
    assert canvas(750, 2484, 3, stereo, 1) == 0  # level 2: 187 x 621
    assert canvas(480, 640, 4, PatchFlow(long_jump_levels=1), 1) == 0  # jumps differ
    assert canvas(480, 640, 4, PatchFlow(long_jump_levels=2), 1) == 2
    assert canvas(480, 640, 4, PatchFlow(long_jump_levels=0), 1) == 3
    assert canvas(480, 640, 4, flow, 3) == 2  # levels 4, 3 searched
    assert canvas(480, 640, 4, flow, 4) == 0  # only the coarsest level is searched
    assert canvas(48, 64, 0, flow, 0) == 0  # a single level


def test_sizes_in_one_bucket_share_the_compiled_searches_and_refinements(tmp_path, monkeypatch):
    """With ``bucket``, a second size that rounds to the same shapes compiles only the small
    stages (pyramids, level steps, upsampling, crop): no search or refinement; and its flow
    is the flow without the bucket, up to float rounding."""
    from flowlib.models import patchflow as module

    config = PatchFlow(iterations=2, propagation_rounds=1, refine_outer=1, refine_inner=1,
                       coarse_radius=2, bucket=32)
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    rng = np.random.default_rng(7)
    image = gaussian_filter(rng.random((1, 80, 110, 3)), (0, 1.5, 1.5, 0)).astype(np.float32)
    moved = np.roll(image, (1, 2), axis=(1, 2))

    def entries():
        return {key: len(stage._entries) for key, stage in module._STAGES.items()}

    flows = {}
    for h, w in ((71, 95), (68, 90)):  # sizes no other test compiles, both in 96 x 96
        before = entries()
        flows[h, w] = patchflow(image[:, :h, :w], moved[:, :h, :w], config)
        new = {key[0].__name__ for key, n in entries().items() if n > before.get(key, 0)}
        if h == 71:
            assert {"_search_level", "refine_warped"} <= new
        else:
            assert new and not new & {"_search_level", "refine_warped"}
    for (h, w), out in flows.items():
        assert out.flow.shape == (1, h, w, 2)
        assert [v.shape[1:3] for v in out.aux["levels"].values()] == [
            (h >> level, w >> level) for level in (2, 1, 0)]
    plain = patchflow(image[:, :68, :90], moved[:, :68, :90], config.clone(bucket=0))
    np.testing.assert_allclose(np.asarray(flows[68, 90].flow), np.asarray(plain.flow), atol=1e-3)


def test_a_bucketed_stereo_pair_gives_the_disparity_of_its_own_size():
    """PatchStereo's default bucket (32): the disparity, the raw disparity and the
    consistent pixels of a pair whose size is no multiple of it are those of the pair
    matched at its own size (the mirrored right view included), up to float rounding."""
    from flowlib.models.patchflow import PatchStereo, patchstereo

    config = PatchStereo(maxdisp=16, levels=1, iterations=2, propagation_rounds=1,
                         refine_outer=1, refine_inner=1)
    assert config.bucket == 32
    rng = np.random.default_rng(8)
    left = gaussian_filter(rng.random((1, 45, 70, 3)), (0, 1.5, 1.5, 0)).astype(np.float32)
    right = np.roll(left, -5, axis=2)
    out, plain = (patchstereo(left, right, c) for c in (config, config.clone(bucket=0)))
    assert out.disparity.shape == (1, 45, 70)
    np.testing.assert_allclose(np.asarray(out.disparity), np.asarray(plain.disparity), atol=1e-3)
    np.testing.assert_allclose(np.asarray(out.aux["raw"]), np.asarray(plain.aux["raw"]), atol=1e-3)
    assert np.mean(np.asarray(out.aux["consistent"]) == np.asarray(plain.aux["consistent"])) > 0.999
