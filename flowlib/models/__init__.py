"""Flax (Linen) models. Each file states its input and output conventions."""
