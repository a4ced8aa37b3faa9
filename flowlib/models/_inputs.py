"""Checks of the image pair a model is called with (shared by the models)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_image_pair(image1: jax.Array, image2: jax.Array) -> None:
    """Raise ValueError unless both images are float RGB ``(B, H, W, 3)`` of one shape."""
    for name, image in (("image1", image1), ("image2", image2)):
        if image.ndim != 4 or image.shape[-1] != 3 or min(image.shape) < 1:
            raise ValueError(
                f"{name} must have shape (B, H, W, 3) (RGB in [0, 1]), got {image.shape}"
            )
        if not jnp.issubdtype(image.dtype, jnp.floating):
            raise ValueError(
                f"{name} must be a floating-point RGB array in [0, 1], got dtype {image.dtype}"
            )
    if image1.shape != image2.shape:
        raise ValueError(
            f"image1 and image2 must have the same shape, got {image1.shape} and {image2.shape}"
        )
