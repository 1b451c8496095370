"""dubfiv: invertible networks with an interpretable linear head, explanations and user studies."""

__version__ = "0.1.0"
