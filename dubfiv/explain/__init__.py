"""Explanations: counterfactual interpolations, the example-grid baseline, concepts."""
