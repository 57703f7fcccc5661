"""flagship core: a small module library on `tf.Module`, in the spirit of Sonnet 2.

Everything public is listed in `__all__`; other names in the package are internal.
"""

# --- base, helpers ---------------------------------------------------------------
# --- conv, conv_transpose, embed, dropout, sequential, batch_apply, nets ------------
# --- optimizers --------------------------------------------------------------------
from core import distribute, initializers, nets, optimizers, utils

# --- layer_norm, attention, spectral_norm --------------------------------------------
from core.attention import MultiHeadAttention
from core.batch_apply import BatchApply, Flatten, Reshape

# --- batch_norm, moving_averages -----------------------------------------------------
from core.batch_norm import BatchNorm, CrossReplicaBatchNorm
from core.conv import Conv1D, Conv2D, Conv3D
from core.conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from core.dropout import Dropout
from core.embed import Embed
from core.layer_norm import GroupNorm, LayerNorm

# --- linear ------------------------------------------------------------------------
from core.linear import Linear
from core.module import Module, no_name_scope, once
from core.moving_averages import ExponentialMovingAverage

# --- recurrent ---------------------------------------------------------------------
from core.recurrent import (
    GRU,
    LSTM,
    Conv1DLSTM,
    Conv2DLSTM,
    Conv3DLSTM,
    DeepRNN,
    LSTMState,
    RNNCore,
    checkpointed_unroll,
    deep_rnn_with_residual_connections,
    deep_rnn_with_skip_connections,
    dynamic_unroll,
    static_unroll,
)
from core.sequential import Sequential
from core.spectral_norm import SpectralNorm

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
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "Embed",
    "Dropout",
    "Sequential",
    "BatchApply",
    "Reshape",
    "Flatten",
    "nets",
    # batch_norm, moving_averages
    "BatchNorm",
    "CrossReplicaBatchNorm",
    "ExponentialMovingAverage",
    # layer_norm, attention, spectral_norm
    "LayerNorm",
    "GroupNorm",
    "MultiHeadAttention",
    "SpectralNorm",
    # recurrent
    "RNNCore",
    "LSTMState",
    "LSTM",
    "GRU",
    "Conv1DLSTM",
    "Conv2DLSTM",
    "Conv3DLSTM",
    "DeepRNN",
    "deep_rnn_with_skip_connections",
    "deep_rnn_with_residual_connections",
    "dynamic_unroll",
    "static_unroll",
    "checkpointed_unroll",
    # optimizers
    "optimizers",
]
