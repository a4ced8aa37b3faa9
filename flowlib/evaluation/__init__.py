"""flowlib.evaluation."""
