"""Ready-made networks built from core modules."""

from core.nets.mlp import MLP

__all__ = ["MLP"]
