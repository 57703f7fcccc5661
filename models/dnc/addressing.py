"""Memory addressing of the Differentiable Neural Computer, as small pure functions.

Graves et al., "Hybrid computing using a neural network with dynamic external memory",
Nature 538 (2016); equation numbers refer to its Methods section. Everything is
batch-major and works in float32 or float64 for any batch size. Shapes use B (batch),
N (memory slots), W (word size), H (keys), R (read heads) and Wh (write heads).
"""

from collections.abc import Callable

import numpy as np
import tensorflow as tf

# Added inside square roots and denominators so that all-zero memory rows or keys give
# finite values and gradients (the memory starts at zero).
EPSILON = 1e-6


def oneplus(x: tf.Tensor) -> tf.Tensor:
    """`1 + softplus(x)`: the paper's map onto [1, inf) for strengths and sharpness."""
    return 1.0 + tf.nn.softplus(x)


def cosine_weights(
    memory: tf.Tensor,
    keys: tf.Tensor,
    strengths: tf.Tensor,
    strength_op: Callable[[tf.Tensor], tf.Tensor] = tf.nn.softplus,
    masks: tf.Tensor | None = None,
) -> tf.Tensor:
    """Content-based addressing (Methods, "content-based addressing").

        C(M, k, b)[i] = softmax_i( D(k, M[i]) * strength_op(b) ),
        D(u, v) = u.v / (|u| |v| + eps),  |x| = sqrt(sum x^2 + eps).

    The paper maps strengths with oneplus; DeepMind's released code uses softplus, the
    default here. With `masks` (Csordas & Schmidhuber, 2019), head h compares
    k * m_h with M[i] * m_h: only the masked part of each word takes part.

    Args:
      memory: [B, N, W].
      keys: [B, H, W], one key per head.
      strengths: [B, H], before `strength_op`.
      strength_op: maps raw strengths to sharpening factors.
      masks: optional [B, H, W] in [0, 1], one mask per head.

    Returns:
      [B, H, N]: a distribution over slots per key.
    """
    if masks is None:
        dot = tf.matmul(keys, memory, transpose_b=True)
        memory_sq = tf.reduce_sum(tf.square(memory), axis=-1)[:, None, :]  # [B, 1, N]
    else:
        # Sums over w of (k m)(M m) and (M m)^2, without forming a masked memory per head.
        squared_masks = tf.square(masks)
        dot = tf.matmul(keys * squared_masks, memory, transpose_b=True)
        memory_sq = tf.matmul(squared_masks, tf.square(memory), transpose_b=True)
        keys = keys * masks
    memory_norms = tf.sqrt(memory_sq + EPSILON)  # [B, H or 1, N]
    key_norms = tf.sqrt(tf.reduce_sum(tf.square(keys), axis=-1) + EPSILON)  # [B, H]
    similarity = dot / (key_norms[:, :, None] * memory_norms + EPSILON)
    return tf.nn.softmax(similarity * strength_op(strengths)[:, :, None], axis=-1)


def allocation_weights(usage: tf.Tensor) -> tf.Tensor:
    """Dynamic memory allocation, eq. (1): prefer the least-used free slots.

        phi = slot indices sorted by ascending usage,
        a[phi_j] = (1 - u[phi_j]) * prod_{i<j} u[phi_i].

    Usage is first squeezed into [eps, 1] so that an entirely free memory still ranks
    its slots. Gradients flow through the sorted usages; the sort order is a constant.

    The sort makes the step discontinuous where two usages are nearly equal: rounding
    differences of a few units in the last place (XLA fuses multiply-adds where eager
    kernels do not) can rank such slots the other way, and the write then goes to the
    other slot. The two states then agree up to a permutation of slots (and the tiny
    usage difference), and the outputs agree: nothing but this tie order depends on
    where in memory a word sits.

    Args:
      usage: [B, N], in [0, 1].

    Returns:
      [B, N]: allocation weights, summing to at most 1.
    """
    usage = EPSILON + (1.0 - EPSILON) * usage
    order = tf.argsort(usage, axis=-1, stable=True)  # ascending usage; ties by slot index
    sorted_usage = tf.gather(usage, order, batch_dims=1)
    sorted_allocation = (1.0 - sorted_usage) * tf.math.cumprod(sorted_usage, axis=-1, exclusive=True)
    # Scatter back to slot order: position of each slot in the sorted order.
    inverse = tf.argsort(order, axis=-1, stable=True)
    return tf.gather(sorted_allocation, inverse, batch_dims=1)


def updated_usage(
    prev_usage: tf.Tensor,
    write_weights: tf.Tensor,
    free_gate: tf.Tensor,
    read_weights: tf.Tensor,
) -> tf.Tensor:
    """The usage vector, eq. (2) and the retention vector psi.

        u' = u + (1 - u) * (1 - prod_heads(1 - w_write)),
        psi = prod_reads(1 - f_i * w_read_i),   u_t = u' * psi.

    The write and read weights are those of the previous step. The write weights enter
    under stop_gradient, as in DeepMind's code: usage is bookkeeping, and letting
    gradients through it couples every step to every earlier write.

    Args:
      prev_usage: [B, N].
      write_weights: [B, Wh, N], the previous step's.
      free_gate: [B, R], in [0, 1].
      read_weights: [B, R, N], the previous step's.

    Returns:
      [B, N]: the new usage, in [0, 1].
    """
    written = 1.0 - tf.reduce_prod(1.0 - tf.stop_gradient(write_weights), axis=1)
    usage = prev_usage + (1.0 - prev_usage) * written
    return usage * retention_vector(free_gate, read_weights)


def retention_vector(free_gate: tf.Tensor, read_weights: tf.Tensor) -> tf.Tensor:
    """psi = prod_reads(1 - f_i * w_read_i): how much of each slot the free gates keep.

    Args:
      free_gate: [B, R], in [0, 1].
      read_weights: [B, R, N], the previous step's.

    Returns:
      [B, N], in [0, 1].
    """
    return tf.reduce_prod(1.0 - free_gate[:, :, None] * read_weights, axis=1)


def write_allocation_weights(usage: tf.Tensor, write_gates: tf.Tensor, num_writes: int) -> tf.Tensor:
    """Allocation weights for several write heads, each avoiding the slots of the ones before.

    Head i allocates from a usage that already counts heads 0..i-1 as having written
    their allocation with strength g_i = allocation_gate * write_gate:

        a_i = allocation_weights(u_i),  u_{i+1} = u_i + (1 - u_i) * g_i * a_i.

    Args:
      usage: [B, N].
      write_gates: [B, Wh], allocation gate times write gate per head.
      num_writes: Wh.

    Returns:
      [B, Wh, N].
    """
    allocations = []
    for i in range(num_writes):
        allocation = allocation_weights(usage)
        allocations.append(allocation)
        usage = usage + (1.0 - usage) * write_gates[:, i, None] * allocation
    return tf.stack(allocations, axis=1)


def updated_linkage(
    prev_link: tf.Tensor, prev_precedence: tf.Tensor, write_weights: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Temporal link matrix and precedence weights, eqs. (5)-(7), per write head.

        L[i, j] = (1 - w[i] - w[j]) L_prev[i, j] + w[i] p_prev[j],   L[i, i] = 0,
        p = (1 - sum_i w[i]) p_prev + w.

    L[i, j] is how much slot i was written right after slot j. The link uses the
    previous precedence, so a write is linked to the write before it.

    Args:
      prev_link: [B, Wh, N, N].
      prev_precedence: [B, Wh, N].
      write_weights: [B, Wh, N], this step's.

    Returns:
      (link [B, Wh, N, N], precedence [B, Wh, N]).
    """
    w_i = write_weights[..., :, None]
    w_j = write_weights[..., None, :]
    link = (1.0 - w_i - w_j) * prev_link + w_i * prev_precedence[..., None, :]
    link = link * _off_diagonal(write_weights)
    precedence = (1.0 - tf.reduce_sum(write_weights, axis=-1, keepdims=True)) * prev_precedence + write_weights
    return link, precedence


def _off_diagonal(weights: tf.Tensor) -> tf.Tensor:
    """1 - I, [N, N], in the dtype of `weights` [..., N]: a constant when N is known."""
    n = weights.shape[-1]
    if n is None:
        return 1.0 - tf.eye(tf.shape(weights)[-1], dtype=weights.dtype)
    return tf.constant(1.0 - np.eye(n), dtype=weights.dtype)


def linkage_and_directional_reads(
    prev_link: tf.Tensor, prev_precedence: tf.Tensor, write_weights: tf.Tensor, prev_read_weights: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """`updated_linkage`, then both `directional_read_weights` through the new link, in one step.

    The same values as the two functions composed; the gradient is written by hand,
    which in a backward pass through time is most of the DNC's cost at large N
    (Graves et al. 2016, eqs. (5)-(8)). Per batch element and write head, with
    C = 1 - w 1^T - 1 w^T, M = 1 - I, and the read weights as the rows of W [R, N]:

        L = M o (C o L_prev + w p_prev^T),   f = W L^T,   b = W L,
        p = (1 - sum w) p_prev + w.

    Given the gradients dL, dp, df, db of the outputs:

        G = M o (dL + df^T W + W^T db)           (one [N, 2R] x [2R, N] product)
        dL_prev = C o G
        dw = -rowsum(G o L_prev) - colsum(G o L_prev) + G p_prev + dp - (dp . p_prev)
        dp_prev = G^T w + (1 - sum w) dp
        dW = sum over write heads of (df L + db L^T).

    Automatic differentiation of the composed functions keeps several N x N
    intermediates per step for the backward pass and spends a pass over N x N on
    each broadcast it undoes; this keeps only the previous and the new link.

    Args:
      prev_link: [B, Wh, N, N].
      prev_precedence: [B, Wh, N].
      write_weights: [B, Wh, N], this step's.
      prev_read_weights: [B, R, N], the previous step's.

    Returns:
      (link [B, Wh, N, N], precedence [B, Wh, N], forward [B, R, Wh, N],
      backward [B, R, Wh, N]).
    """
    return _linkage_and_directional_reads(prev_link, prev_precedence, write_weights, prev_read_weights)


@tf.custom_gradient
def _linkage_and_directional_reads(prev_link, prev_precedence, write_weights, prev_read_weights):
    link, precedence = updated_linkage(prev_link, prev_precedence, write_weights)
    reads = prev_read_weights[:, None]  # [B, 1, R, N], the same for every write head
    # Rows: f_r^T = w_r^T L^T, b_r^T = w_r^T L; [B, Wh, R, N] -> [B, R, Wh, N].
    forward = tf.transpose(tf.matmul(reads, link, transpose_b=True), [0, 2, 1, 3])
    backward = tf.transpose(tf.matmul(reads, link), [0, 2, 1, 3])

    def grad(d_link, d_precedence, d_forward, d_backward):
        if d_forward is None and d_backward is None:
            g, d_reads = tf.zeros_like(link) if d_link is None else d_link, None
        else:
            d_forward = tf.zeros_like(forward) if d_forward is None else d_forward
            d_backward = tf.zeros_like(backward) if d_backward is None else d_backward
            d_forward = tf.transpose(d_forward, [0, 2, 1, 3])  # [B, Wh, R, N]
            d_backward = tf.transpose(d_backward, [0, 2, 1, 3])
            tiled_reads = tf.broadcast_to(reads, tf.shape(d_forward))
            g = tf.matmul(
                tf.concat([d_forward, tiled_reads], axis=-2),
                tf.concat([tiled_reads, d_backward], axis=-2),
                transpose_a=True,
            )
            if d_link is not None:
                g = g + d_link
            d_reads = tf.matmul(d_forward, link) + tf.matmul(d_backward, link, transpose_b=True)
            d_reads = tf.reduce_sum(d_reads, axis=1)
        g = g * _off_diagonal(write_weights)
        w_i = write_weights[..., :, None]
        w_j = write_weights[..., None, :]
        d_prev_link = g * (1.0 - w_i - w_j)
        d_coefficient = g * prev_link
        d_write = (
            tf.linalg.matvec(g, prev_precedence)
            - tf.reduce_sum(d_coefficient, axis=-1)
            - tf.reduce_sum(d_coefficient, axis=-2)
        )
        d_prev_precedence = tf.linalg.matvec(g, write_weights, transpose_a=True)
        if d_precedence is not None:
            total = tf.reduce_sum(write_weights, axis=-1, keepdims=True)
            d_write += d_precedence - tf.reduce_sum(d_precedence * prev_precedence, axis=-1, keepdims=True)
            d_prev_precedence += (1.0 - total) * d_precedence
        return d_prev_link, d_prev_precedence, d_write, d_reads

    return (link, precedence, forward, backward), grad


def directional_read_weights(link: tf.Tensor, prev_read_weights: tf.Tensor, forward: bool) -> tf.Tensor:
    """Forward or backward read weights through the link matrix, eq. (8).

        forward f = L w_read,   backward b = L^T w_read,

    computed for every (read head, write head) pair.

    Args:
      link: [B, Wh, N, N].
      prev_read_weights: [B, R, N].
      forward: True for f (the slot written after), False for b (before).

    Returns:
      [B, R, Wh, N].
    """
    # Row vectors: f^T = w^T L^T and b^T = w^T L.
    return tf.einsum("brn,bhmn->brhm" if forward else "brm,bhmn->brhn", prev_read_weights, link)


def sharpen(weights: tf.Tensor, sharpness: tf.Tensor) -> tf.Tensor:
    """Sharpens distributions over slots (Csordas & Schmidhuber, 2019, link sharpness).

        d <- (d + eps) / max(d + eps),   S(d, s) = d^s / sum_i d_i^s,   s >= 1.

    Reading through the link several times in a row multiplies its noise; raising to a
    power s > 1 concentrates the mass back on the largest entries. Dividing by the
    maximum first keeps the power from underflowing.

    Args:
      weights: [..., N], non-negative.
      sharpness: [...], at least 1.

    Returns:
      [..., N]: distributions summing to 1.
    """
    weights = weights + EPSILON
    weights = weights / tf.reduce_max(weights, axis=-1, keepdims=True)
    powered = tf.pow(weights, sharpness[..., None])
    return powered / tf.reduce_sum(powered, axis=-1, keepdims=True)
