"""Flax (Linen) models. Each file states its input and output conventions and ends with
``SPECS``, the declaration of its models (:mod:`flowlib.models._spec`)."""
