"""flagship core: a small module library on `tf.Module`, in the spirit of Sonnet 2.

Everything public is listed in `__all__`; other names in the package are internal.
"""

from core import distribute
from core import initializers
from core import utils
from core.linear import Linear
from core.module import Module, no_name_scope, once

__all__ = [
    "Module",
    "once",
    "no_name_scope",
    "distribute",
    "initializers",
    "utils",
    "Linear",
]
