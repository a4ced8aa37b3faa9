"""flowlib.data."""
