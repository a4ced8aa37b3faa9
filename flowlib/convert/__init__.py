"""flowlib.convert."""
