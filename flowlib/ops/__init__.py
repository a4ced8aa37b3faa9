"""Pure-JAX primitives shared by every model (no Flax).

Conventions (repeated in each op's docstring):

* Layout: NHWC. Features ``(B, H, W, C)``; flow ``(B, H, W, 2)`` with channel 0 = u
  (+x, right) and channel 1 = v (+y, down), in pixels of the grid that holds it;
  disparity ``(B, H, W)``, d >= 0, referenced to the left image (right x = left x - d).
  Cost volumes are ``(B, D, H, W, C)`` (channels last, ready for 3-D convolutions),
  probabilities over disparity ``(B, D, H, W)``.
* Coordinates: pixel centres at integers 0..W-1; sampling coordinates are absolute
  pixel positions ``(..., 2)`` in ``(x, y)`` order.
* Options that change numerics (``padding``, ``align_corners``, ``count_include_pad``,
  ``normalize``) are required keyword arguments.
* Every op is jit-able and differentiable; shape errors are raised in Python with a
  message naming the expected shape.
"""

from flowlib.ops.normalize import l2_normalize
from flowlib.ops.pad import Padding, pad_to_multiple, unpad
from flowlib.ops.resize import (
    avg_pool,
    image_pyramid,
    resize_bilinear,
    resize_nearest,
    resize_trilinear,
    upsample_flow,
)
from flowlib.ops.sample import bilinear_sample, grid_sample_coords, in_bounds
from flowlib.ops.warp import backward_warp, warp_by_disparity, warp_validity
from flowlib.ops.correlation import all_pairs_correlation, local_correlation
from flowlib.ops.correlation_pyramid import (
    correlation_pyramid,
    feature_pyramid,
    lookup_correlation_on_the_fly,
    lookup_correlation_pyramid,
)
from flowlib.ops.patches import (
    PatchGrid,
    extract_patches,
    overlap_add,
    patch_grid,
    patch_means,
    sample_patches,
)
from flowlib.ops.cost_volume import (
    concat_cost_volume,
    disparity_regression,
    disparity_variance,
    gather_by_integer_disparity,
    groupwise_correlation,
    groupwise_cost_volume,
)

__all__ = [
    "l2_normalize",
    "Padding",
    "pad_to_multiple",
    "unpad",
    "avg_pool",
    "image_pyramid",
    "resize_bilinear",
    "resize_nearest",
    "resize_trilinear",
    "upsample_flow",
    "bilinear_sample",
    "grid_sample_coords",
    "in_bounds",
    "backward_warp",
    "warp_by_disparity",
    "warp_validity",
    "all_pairs_correlation",
    "local_correlation",
    "correlation_pyramid",
    "feature_pyramid",
    "lookup_correlation_pyramid",
    "lookup_correlation_on_the_fly",
    "concat_cost_volume",
    "disparity_regression",
    "disparity_variance",
    "gather_by_integer_disparity",
    "groupwise_correlation",
    "groupwise_cost_volume",
    "PatchGrid",
    "patch_grid",
    "extract_patches",
    "patch_means",
    "sample_patches",
    "overlap_add",
]
