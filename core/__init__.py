"""flagship core: a small module library on `tf.Module`, in the spirit of Sonnet 2.

Everything public is listed in `__all__`; other names in the package are internal.
"""

# --- base, helpers ---------------------------------------------------------------
from core import distribute
from core import initializers
from core import utils
from core.module import Module, no_name_scope, once

# --- linear ------------------------------------------------------------------------
from core.linear import Linear

# --- conv, conv_transpose, embed, dropout, sequential, batch_apply, nets ------------
# --- batch_norm, moving_averages -----------------------------------------------------
# --- layer_norm, attention, spectral_norm --------------------------------------------
# --- recurrent ---------------------------------------------------------------------
# --- optimizers --------------------------------------------------------------------

__all__ = [
    # base, helpers
    "Module",
    "once",
    "no_name_scope",
    "distribute",
    "initializers",
    "utils",
    # linear
    "Linear",
    # conv, conv_transpose, embed, dropout, sequential, batch_apply, nets
    # batch_norm, moving_averages
    # layer_norm, attention, spectral_norm
    # recurrent
    # optimizers
]
