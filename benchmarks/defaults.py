"""flowlib's default (embedded) models against classical baselines on the real pairs.

    python -m benchmarks.defaults --data ../shared/data [--json OUT]
    python -m benchmarks.defaults --speed [--preset NAME] [--runs N] [--json OUT]
    python -m benchmarks.defaults --speed --presets [--runs N] [--json OUT]
    python -m benchmarks.defaults --mixed [--data ../shared/data] [--json OUT]

Flow: the default of ``flowlib.estimate`` vs OpenCV DIS and Farneback on Middlebury
RubberWhale/Venus, Sintel alley_1 clean/final, KITTI 2015 000000 (flow_noc) and the
FlyingChairs samples: EPE (and Fl for KITTI). Stereo: the default of
``flowlib.estimate_disparity`` vs OpenCV StereoSGBM on Middlebury tsukuba/venus, KITTI 2015
000000 and FlyingThings3D: EPE (and D1).

Every method runs as its users would configure it, and the run prints those settings: the
OpenCV presets and values its documentation recommends, and for stereo each dataset's known
disparity range given to both methods (Middlebury 2001: its ``info.txt``; KITTI and
FlyingThings3D: the customary 192). OpenCV is an optional benchmark dependency
(``pip install opencv-python-headless``). Lower is better everywhere; each group's best is
marked with ``*``.

``--speed``: time instead of accuracy, on rendered pairs (:mod:`flowlib.data.synthetic`,
no data needed) at the sizes of the table in the README: flow 640x480 (Middlebury),
1024x436 (Sintel), 1280x720 and 1920x1080, stereo 1242x375 (KITTI). Each row runs in a
fresh process with an empty ``FLOWLIB_HOME`` (no compilation cache) and prints the first
call at that size (compilation included), the steady state (median of ``--runs`` calls),
OpenCV on the same pair in the same process (DIS MEDIUM for flow; StereoSGBM
numDisparities 192, blockSize 5, 3-way for stereo), their ratio and the time per pixel.

``--speed --presets``: the steady state of every preset of the default models and of the
OpenCV peer on the Sintel-size flow pair and the KITTI-size stereo pair, all called in turn in
one process for ``--runs`` rounds (after one call each), so that they share the machine's
state: the medians.

``--mixed``: an evaluation over images of several sizes. In a fresh process with an empty
``FLOWLIB_HOME``, ``flowlib evaluate middlebury-flow`` and ``middlebury-stereo`` (the default
models, every pair of ``--data``'s Middlebury sets) run twice: the first pass compiles each
size it meets, the second finds every size compiled and is the sum of the steady-state
per-pair times (loading, estimating and scoring each pair). Prints both, their ratio, and
the process's wall time including Python's start and imports; then the first pass of a
second fresh process that shares the first one's ``FLOWLIB_HOME`` (its compilation cache
filled: JAX's import and initialisation and loading the executables, no compile), and for
scale the time a fresh process takes to import JAX alone.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

import flowlib
from flowlib import _zoo, data, metrics


def _grey_u8(img: np.ndarray) -> np.ndarray:
    return np.round(255 * (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2])).astype(np.uint8)


#: Farneback's parameters: the values of OpenCV's optical-flow tutorial.
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
             "poly_sigma": 1.2, "flags": 0}
#: StereoSGBM's parameters besides the disparity range: block size in OpenCV's recommended
#: 3-11, P1 = 8 * channels * block^2 and P2 = 32 * channels * block^2 as its documentation
#: gives them, uniqueness 5-15, speckle window 50-200, speckle range 1-2 (the documented
#: "normally" values), the 3-way mode.
SGBM_BLOCK = 5
SGBM = {"blockSize": SGBM_BLOCK, "P1": 8 * 3 * SGBM_BLOCK**2, "P2": 32 * 3 * SGBM_BLOCK**2,
        "disp12MaxDiff": 1, "uniquenessRatio": 10, "speckleWindowSize": 100, "speckleRange": 2,
        "mode": "STEREO_SGBM_MODE_SGBM_3WAY"}
#: The customary disparity range (number of disparities 0 .. D-1) of datasets that do not
#: state one: the KITTI and SceneFlow networks' maxdisp (GC-Net, PSMNet, CFNet).
CUSTOMARY_RANGE = {"KITTI 2015": 192, "FlyingThings3D": 192}


def disparity_range(group: str, sample: Any) -> int:
    """The range D a user would give both stereo methods for ``sample``: the dataset's known
    largest disparity + 1 (Middlebury 2001 ``info.txt``) or its customary range, rounded up to
    a multiple of 16 (StereoSGBM's numDisparities must be one). SGBM searches 0 .. D-1,
    PatchStereo 0 .. D."""
    known = sample.meta.get("max_disparity")
    count = math.floor(known) + 1 if known is not None else CUSTOMARY_RANGE[group]
    return 16 * math.ceil(count / 16)


def flow_methods(model: Any) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return {
        f"flowlib {model.name}": lambda a, b: flowlib.estimate(a, b, model),
        "zero flow (floor)": lambda a, b: np.zeros((*a.shape[:2], 2), np.float32),
        "OpenCV DIS medium": lambda a, b: dis.calc(_grey_u8(a), _grey_u8(b), None),
        "OpenCV Farneback": lambda a, b: cv2.calcOpticalFlowFarneback(
            _grey_u8(a), _grey_u8(b), None, *FARNEBACK.values()),
    }


def flow_settings(model: Any) -> dict[str, str]:
    return {
        f"flowlib {model.name}": f"the embedded defaults ({model.meta.get('weights')})",
        "OpenCV DIS medium": "DISOpticalFlow_create(DISOPTICAL_FLOW_PRESET_MEDIUM), the "
                             "highest-quality preset, on grey uint8",
        "OpenCV Farneback": "calcOpticalFlowFarneback(" + ", ".join(
            f"{k}={v}" for k, v in FARNEBACK.items()) + ") (OpenCV tutorial), on grey uint8",
    }


def sgbm(a: np.ndarray, b: np.ndarray, num_disparities: int) -> np.ndarray:
    """StereoSGBM with :data:`SGBM` over 0 .. num_disparities-1; invalid (negative)
    disparities filled from the left neighbour, as a user would."""
    import cv2

    settings = {**SGBM, "mode": getattr(cv2, SGBM["mode"])}
    matcher = cv2.StereoSGBM_create(0, num_disparities, **settings)
    u8 = lambda x: np.round(255 * x).astype(np.uint8)[..., ::-1]  # noqa: E731 (OpenCV wants BGR)
    d = matcher.compute(u8(a), u8(b)).astype(np.float32) / 16.0
    d[d < 0] = np.nan
    for y in range(d.shape[0]):
        row = d[y]
        good = ~np.isnan(row)
        if good.any():
            idx = np.where(good, np.arange(row.size), 0)
            np.maximum.accumulate(idx, out=idx)
            row[:] = row[idx]
            row[np.isnan(row)] = row[good][0]
        else:
            row[:] = 0
    return d


def stereo_methods(name: str, weights: Any = None) -> dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]]:
    """Stereo methods ``(left, right, D) -> disparity``, D from :func:`disparity_range`."""
    models: dict[int, Any] = {}

    def patchstereo(a: np.ndarray, b: np.ndarray, count: int) -> np.ndarray:
        if count not in models:
            models[count] = flowlib.load_model(name, weights, maxdisp=count)
        with warnings.catch_warnings():
            # the range is the dataset's: estimates at its top are the scene, not a cap
            warnings.simplefilter("ignore", flowlib.DisparityRangeWarning)
            return flowlib.estimate_disparity(a, b, models[count])

    return {f"flowlib {name}": patchstereo, "OpenCV SGBM": sgbm}


def stereo_settings(name: str, ranges: dict[str, int]) -> dict[str, str]:
    return {
        "disparity range D": ", ".join(f"{k} {v}" for k, v in ranges.items()),
        f"flowlib {name}": "maxdisp=D (searches 0 .. D), other settings the embedded defaults",
        "OpenCV SGBM": "StereoSGBM_create(minDisparity=0, numDisparities=D, " + ", ".join(
            f"{k}={v}" for k, v in SGBM.items()) + "); invalid pixels filled from the left "
            "neighbour",
    }


def flowlib_device() -> str:
    import jax

    return jax.devices()[0].device_kind


def versions() -> dict[str, str]:
    import cv2
    import jax
    import ml_dtypes

    return {"flowlib": flowlib.__version__, "jax": jax.__version__, "numpy": np.__version__,
            "ml_dtypes": ml_dtypes.__version__, "opencv": cv2.__version__}


def import_seconds(module: str = "jax", runs: int = 3) -> float:
    """Median wall time of ``python -c "import MODULE"`` in fresh processes: what every
    command pays before its first step (JAX's import time depends on ml_dtypes' version)."""
    import subprocess

    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def flow_cases(root: Path) -> list[tuple[str, Any]]:
    cases = []
    for s in data.index_middlebury_flow(root / "middlebury-flow"):
        cases.append(("Middlebury", s))
    for pass_ in ("clean", "final"):
        for s in data.index_sintel(root / "sintel", pass_=pass_):
            cases.append((f"Sintel {pass_}", s))
    for s in data.index_kitti_flow(root / "kitti2015", gt="noc"):
        cases.append(("KITTI 2015", s))
    for s in data.index_flyingchairs(root / "flyingchairs"):
        cases.append(("FlyingChairs", s))
    return cases


def stereo_cases(root: Path) -> list[tuple[str, Any]]:
    cases = [("Middlebury", s) for s in data.index_middlebury_stereo(root / "middlebury-stereo")]
    cases += [("KITTI 2015", s) for s in data.index_kitti_stereo(root / "kitti2015")]
    cases += [("FlyingThings3D", s) for s in data.index_flyingthings3d(root / "flyingthings3d")]
    return cases


#: --speed rows: (task, height, width).
SPEED_ROWS = (("flow", 480, 640), ("flow", 436, 1024), ("flow", 720, 1280), ("flow", 1080, 1920),
              ("stereo", 375, 1242))


def _sgbm_3way() -> Any:
    import cv2

    block = 5
    return cv2.StereoSGBM_create(0, 192, block, P1=8 * 3 * block**2, P2=32 * 3 * block**2,
                                 disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=100,
                                 speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)


def _speed_pair(task: str, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray, Callable[[], Any], str]:
    """The rendered pair of a --speed row and its OpenCV peer on it: ``(a, b, peer, name)``."""
    import cv2

    from flowlib.data import synthetic

    if task == "flow":
        d = synthetic.flow_pair(1, height, width, motion=1.5)
        a, b = d["image1"], d["image2"]
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        ga, gb = _grey_u8(a), _grey_u8(b)
        return a, b, (lambda: dis.calc(ga, gb, None)), "DIS medium"
    d = synthetic.stereo_pair(1, height, width, max_disparity=160)
    a, b = d["left"], d["right"]
    sgbm = _sgbm_3way()
    ua, ub = (np.round(255 * x).astype(np.uint8)[..., ::-1] for x in (a, b))
    return a, b, (lambda: sgbm.compute(ua, ub)), "SGBM 3-way"


#: --speed / --presets task -> the default model they time.
_DEFAULT_MODEL = {"flow": _zoo.DEFAULT_FLOW_MODEL, "stereo": _zoo.DEFAULT_STEREO_MODEL}


def _estimator(task: str, a: np.ndarray, b: np.ndarray, model: Any) -> Callable[[], Any]:
    if task == "flow":
        return lambda: flowlib.estimate(a, b, model)
    return lambda: flowlib.estimate_disparity(a, b, model)


def speed_row(task: str, height: int, width: int, *, runs: int, preset: str | None) -> dict[str, Any]:
    """One --speed row, measured in this process (call it in a fresh one)."""
    import jax

    options = {} if preset is None else {"preset": preset}
    name = _DEFAULT_MODEL[task]
    t = time.perf_counter()
    model = flowlib.load_model(name, **options)
    load_s = time.perf_counter() - t
    a, b, peer, peer_name = _speed_pair(task, height, width)
    ours = _estimator(task, a, b, model)
    t = time.perf_counter()
    ours()
    first_s = time.perf_counter() - t
    peer()

    def median(fn: Callable[[], Any], n: int) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    # Interleaved, so that both see the same machine state.
    ours_s, peer_s = [], []
    for _ in range(runs):
        ours_s.append(median(ours, 1))
        peer_s.append(median(peer, 3))
    steady, opencv = float(np.median(ours_s)), float(np.median(peer_s))
    return {"task": task, "size": f"{width}x{height}", "model": model.name,
            "preset": preset or "default", "load_model_s": load_s, "first_call_s": first_s,
            "steady_s": steady, "opencv": peer_name, "opencv_s": opencv, "ratio": steady / opencv,
            "ns_per_pixel": 1e9 * steady / (height * width), "dtype": "float32",
            "device": str(jax.devices()[0].device_kind)}


#: --presets rows: the README's presets table.
PRESET_ROWS = (("flow", 436, 1024), ("stereo", 375, 1242))


def presets_row(task: str, height: int, width: int, *, runs: int) -> dict[str, Any]:
    """Steady state of every preset and of the OpenCV peer on one pair, called in turn in this
    process for ``runs`` rounds (each compiled and run once before): their medians."""
    from flowlib.models.patchflow import PRESETS

    name = _DEFAULT_MODEL[task]
    a, b, peer, peer_name = _speed_pair(task, height, width)
    calls = {preset: _estimator(task, a, b, flowlib.load_model(name, preset=preset))
             for preset in PRESETS[name]}
    calls[peer_name] = peer
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(runs):
        for k, call in calls.items():
            t = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - t)
    return {"task": task, "size": f"{width}x{height}", "model": name, "dtype": "float32",
            "steady_s": {k: float(np.median(v)) for k, v in times.items()}}


def speed(runs: int, preset: str | None) -> list[dict[str, Any]]:
    """Every --speed row, each in a fresh process with an empty FLOWLIB_HOME."""
    import subprocess
    import tempfile

    rows = []
    for task, h, w in SPEED_ROWS:
        with tempfile.TemporaryDirectory() as home:
            cmd = [sys.executable, "-m", "benchmarks.defaults", "--speed-row", task, str(h), str(w),
                   "--runs", str(runs)] + ([] if preset is None else ["--preset", preset])
            env = {**__import__("os").environ, "FLOWLIB_HOME": home}
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True,
                                 cwd=Path(__file__).resolve().parents[1])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print_speed_row(rows[-1])
    return rows


#: --mixed rows: (benchmark, folder under --data).
MIXED_ROWS = (("middlebury-flow", "middlebury-flow"), ("middlebury-stereo", "middlebury-stereo"))

_MIXED_SCRIPT = r"""
import contextlib, io, json, sys, time
from flowlib import cli
argv = sys.argv[1:]
times = []
for _ in range(2):
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    assert code == 0, code
    times.append(time.perf_counter() - t)
print(json.dumps({"first_pass_s": times[0], "steady_pass_s": times[1]}))
"""


def mixed(root: Path) -> list[dict[str, Any]]:
    """Every --mixed row: a fresh process with an empty FLOWLIB_HOME, then one with the
    cache it filled."""
    import os
    import subprocess
    import tempfile

    rows = []
    for bench, folder in MIXED_ROWS:
        data_root = root / folder
        samples = (data.index_middlebury_flow if bench.endswith("flow")
                   else data.index_middlebury_stereo)(data_root)
        sizes = sorted({tuple(data.load_sample(s)["image1"].shape[:2]) for s in samples})
        cmd = [sys.executable, "-c", _MIXED_SCRIPT, "evaluate", bench, "--root", str(data_root),
               "-q"]
        with tempfile.TemporaryDirectory() as home:
            runs = []
            for _ in range(2):  # an empty cache, then the cache the first process filled
                t = time.perf_counter()
                out = subprocess.run(cmd, env={**os.environ, "FLOWLIB_HOME": home}, check=True,
                                     capture_output=True, text=True,
                                     cwd=Path(__file__).resolve().parents[1])
                wall = time.perf_counter() - t
                runs.append((wall, json.loads(out.stdout.strip().splitlines()[-1])))
        (wall, first), (_, filled) = runs
        row = {"benchmark": bench, "pairs": len(samples),
               "sizes": [f"{w}x{h}" for h, w in sizes], "process_wall_s": wall, **first,
               "filled_cache_first_pass_s": filled["first_pass_s"]}
        row["ratio"] = row["first_pass_s"] / row["steady_pass_s"]
        rows.append(row)
        print(f"| {bench} ({row['pairs']} pairs, {', '.join(row['sizes'])}) | "
              f"{row['first_pass_s']:.2f} s | {row['steady_pass_s']:.2f} s | {row['ratio']:.1f}x "
              f"| {wall:.2f} s | {row['filled_cache_first_pass_s']:.2f} s |", flush=True)
    return rows


def print_speed_row(r: dict[str, Any]) -> None:
    print(f"| {r['task']} {r['size']} ({r['model']} {r['preset']}) | {r['first_call_s']:.2f} s "
          f"| {1e3 * r['steady_s']:.0f} ms | {r['opencv']} {1e3 * r['opencv_s']:.1f} ms "
          f"| {r['ratio']:.1f}x | {r['ns_per_pixel']:.0f} ns/px |", flush=True)


def run(cases: list[tuple[str, Any]], methods: dict[str, Callable], task: str) -> dict[str, dict[str, dict[str, float]]]:
    """group -> method -> {epe, fl|d1, seconds}; EPE is the mean over the group's pairs."""
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for group, sample in cases:
        d = data.load_sample(sample)
        a, b = d["image1"], d["image2"]
        extra_args = (disparity_range(group, sample),) if task == "stereo" else ()
        for name, method in methods.items():
            t = time.perf_counter()
            pred = np.asarray(method(a, b, *extra_args), dtype=np.float32)
            seconds = time.perf_counter() - t
            valid = d["valid"]
            if task == "flow":
                epe = float(metrics.epe_map(pred, d["flow"])[valid].mean())
                extra = ("fl", 100 * float(metrics.fl_outlier_map(pred, d["flow"])[valid].mean()))
            else:
                gt = d["disparity"]
                if "nonocc" in d:
                    valid = valid & d["nonocc"]
                epe = float(np.abs(pred - gt)[valid].mean())
                extra = ("d1", 100 * float(metrics.d1_outlier_map(pred, gt)[valid].mean()))
            cell = table.setdefault(group, {}).setdefault(name, {"epe": [], extra[0]: [], "seconds": []})
            cell["epe"].append(epe)
            cell[extra[0]].append(extra[1])
            cell["seconds"].append(seconds)
    return {g: {m: {k: float(np.mean(v)) for k, v in cell.items()} for m, cell in ms.items()} for g, ms in table.items()}


def print_table(title: str, results: dict[str, dict[str, dict[str, float]]],
                settings: dict[str, str] | None = None) -> None:
    print(title)
    for what, setting in (settings or {}).items():
        print(f"  settings: {what}: {setting}")
    for group, methods in results.items():
        best = min(m["epe"] for m in methods.values())
        for name, m in methods.items():
            extra = " ".join(f"{k} {v:7.2f}" for k, v in m.items() if k not in ("epe", "seconds"))
            mark = "*" if m["epe"] == best else " "
            print(f"  {group:<15} {name:<22} EPE {m['epe']:8.3f}{mark}  {extra}  ({m['seconds']:.2f} s)")
    print()


def case_ranges(cases: list[tuple[str, Any]]) -> dict[str, int]:
    """``"group scene" -> D`` of every stereo case (for the printed settings)."""
    return {f"{group} {sample.meta['scene']}" if 'scene' in sample.meta else group:
            disparity_range(group, sample)
            for group, sample in cases}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.defaults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--flow-model", default=_zoo.DEFAULT_FLOW_MODEL)
    p.add_argument("--flow-weights", default=None, help="default: the model's default (embedded) weights")
    p.add_argument("--stereo-model", default=_zoo.DEFAULT_STEREO_MODEL)
    p.add_argument("--stereo-weights", default=None)
    p.add_argument("--task", choices=["flow", "stereo", "both"], default="both")
    p.add_argument("--json", default=None)
    p.add_argument("--speed", action="store_true", help="time instead of accuracy (no data needed)")
    p.add_argument("--preset", default=None, help="--speed: the models' preset (default: none)")
    p.add_argument("--runs", type=int, default=7, help="--speed: timed calls per row")
    p.add_argument("--mixed", action="store_true",
                   help="a fresh Middlebury evaluation (several image sizes) against its steady state")
    p.add_argument("--presets", action="store_true",
                   help="--speed: every preset and the OpenCV peer in turn in one process "
                   "(the README's presets table)")
    p.add_argument("--speed-row", nargs=3, metavar=("TASK", "H", "W"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.speed_row:
        task, h, w = args.speed_row
        print(json.dumps(speed_row(task, int(h), int(w), runs=args.runs, preset=args.preset)))
        return 0
    if args.speed and args.presets:
        from benchmarks._machine import cpu_description

        print(f"{cpu_description()}; {json.dumps(versions())}; float32; steady state: each "
              f"preset and the peer called in turn, median of {args.runs} rounds")
        rows = []
        for task, h, w in PRESET_ROWS:
            rows.append(presets_row(task, h, w, runs=args.runs))
            cells = [f"{k} {1e3 * v:.0f} ms" for k, v in rows[-1]["steady_s"].items()]
            print(f"| {task} {w}x{h} ({rows[-1]['model']}) | {' | '.join(cells)} |", flush=True)
        if args.json:
            from benchmarks._timing import write_json

            write_json(args.json, {"versions": versions(), "rows": rows})
        return 0
    if args.speed:
        from benchmarks._machine import cpu_description

        print(f"{cpu_description()}; {json.dumps(versions())}; float32; first call: fresh process, "
              f"empty FLOWLIB_HOME, compilation included; steady: median of {args.runs}")
        print("| row | first call | steady state | OpenCV (same run) | ratio | time/pixel |")
        print("|---|---|---|---|---|---|")
        rows = speed(args.runs, args.preset)
        if args.json:
            from benchmarks._timing import write_json

            write_json(args.json, {"versions": versions(), "rows": rows})
        return 0
    root = Path(args.data)
    if not root.is_dir():
        p.error(f"--data {root}: not a folder (expected the shared real pairs, see ../shared/data/README.md)")
    if args.mixed:
        from benchmarks._machine import cpu_description

        import_jax_s = import_seconds("jax")
        print(f"{cpu_description()}; {json.dumps(versions())}; fresh process, empty FLOWLIB_HOME; "
              "first pass: compiles included; steady: the same evaluation again; "
              f'python -c "import jax": {import_jax_s:.2f} s (median of 3)')
        print("| evaluation | first pass | steady pass | ratio | process wall "
              "| next process, cache filled: first pass |")
        print("|---|---|---|---|---|---|")
        rows = mixed(root)
        if args.json:
            from benchmarks._timing import write_json

            write_json(args.json, {"versions": versions(), "import_jax_s": import_jax_s,
                                   "mixed": rows})
        return 0
    record: dict[str, Any] = {"device": str(flowlib_device()), "versions": versions()}
    if args.task in ("flow", "both"):
        flow_model = flowlib.load_model(args.flow_model, args.flow_weights)
        record["flow"] = run(flow_cases(root), flow_methods(flow_model), "flow")
        record["flow_weights"] = flow_model.meta.get("weights")
        record["flow_settings"] = flow_settings(flow_model)
        print_table(f"optical flow (EPE px, Fl %), flowlib weights {record['flow_weights']}",
                    record["flow"], record["flow_settings"])
    if args.task in ("stereo", "both"):
        stereo_model = flowlib.load_model(args.stereo_model, args.stereo_weights)
        cases = stereo_cases(root)
        record["stereo"] = run(cases, stereo_methods(args.stereo_model, args.stereo_weights),
                               "stereo")
        record["stereo_weights"] = stereo_model.meta.get("weights")
        record["stereo_settings"] = stereo_settings(stereo_model.name, case_ranges(cases))
        print_table(f"stereo (EPE px, D1 %; Middlebury on nonocc), flowlib weights {record['stereo_weights']}",
                    record["stereo"], record["stereo_settings"])
    if args.json:
        from benchmarks._timing import write_json

        write_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
