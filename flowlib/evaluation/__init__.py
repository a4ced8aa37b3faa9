"""Benchmark protocols: which split, which aggregation, and submission layouts.

Protocol only: each evaluator calls a :class:`flowlib.Model` through the batched, sharded
runner and :mod:`flowlib.metrics`; nothing here depends on a model's internals.
"""

from flowlib.evaluation._journal import Journal
from flowlib.evaluation._result import EvaluationResult, Pool
from flowlib.evaluation._runner import predict
from flowlib.evaluation.kitti import evaluate_kitti_flow, evaluate_kitti_stereo
from flowlib.evaluation.middlebury import evaluate_middlebury_flow, evaluate_middlebury_stereo
from flowlib.evaluation.sintel import evaluate_sintel
from flowlib.evaluation.submission import write_submission, zip_folder

__all__ = [
    "EvaluationResult",
    "Journal",
    "Pool",
    "predict",
    "evaluate_sintel",
    "evaluate_kitti_flow",
    "evaluate_kitti_stereo",
    "evaluate_middlebury_flow",
    "evaluate_middlebury_stereo",
    "write_submission",
    "zip_folder",
]
