"""The DNC's memory access: one `core.RNNCore` step of reading from and writing to memory.

Graves et al. (2016), Methods, "Memory addressing". The order of operations inside a
step matters for exactness and follows DeepMind's released code:

1. usage, from the previous step's write and read weights and this step's free gates;
2. write weights, from content lookup over the previous memory and allocation;
3. erase, then add, the write vectors;
4. the temporal link, from the new write weights;
5. read weights, from content lookup over the new memory and the new link;
6. the read words.

Three optional changes from Csordas & Schmidhuber, "Improving Differentiable Neural
Computers Through Memory Masking, De-allocation, and Link Distribution Sharpness
Control" (ICLR 2019), all off by default:
- `masking`: each key comes with a mask in [0, 1]^W; key and memory words are multiplied
  by it before the cosine similarity, so lookup compares only the masked part (a key
  can ignore the value half of a word).
- `deallocation`: freed slots are also erased, `M *= psi` with psi the retention vector,
  so a freed word cannot be found by content lookup any more.
- `link_sharpening`: the forward and backward weights are sharpened, d <- (d / max d)^s
  renormalised, with s >= 1 from the controller, per read head and write head.
"""

import collections
from collections.abc import Callable

import numpy as np
import tensorflow as tf

import core
from models.dnc import addressing

TemporalLinkageState = collections.namedtuple("TemporalLinkageState", ["link", "precedence_weights"])
AccessState = collections.namedtuple("AccessState", ["memory", "read_weights", "write_weights", "linkage", "usage"])

STRENGTH_OPS = {"softplus": tf.nn.softplus, "oneplus": addressing.oneplus}


class MemoryAccess(core.RNNCore):
    """Reads and writes an external memory, driven by a controller's output.

    A `core.RNNCore`: `read_words, next_state = access(controller_output, prev_state)`,
    with `controller_output` [B, C], `read_words` [B, num_reads, word_size] and the state
    an `AccessState` of memory [B, N, W], read weights [B, R, N], write weights
    [B, Wh, N], linkage (link [B, Wh, N, N], precedence [B, Wh, N]) and usage [B, N].
    Everything starts at zero.

    The interface vector (keys, strengths, gates, modes; the reference's table) comes from
    one `core.Linear` named "interface" over the controller output, split into its
    fields. That is the same parameters as one Linear per field (a field's rows of the
    weight are its own Linear) in one matrix product instead of ten.

    Args:
      memory_size: N, the number of memory slots.
      word_size: W, the size of each slot.
      num_reads: R, read heads.
      num_writes: Wh, write heads.
      dtype: dtype of the state (and so of the computation).
      strength_op: maps raw key strengths to sharpening factors: "softplus" (DeepMind's
        code), "oneplus" (the paper's 1 + softplus), or a callable.
      masking: key masks for content lookup (Csordas & Schmidhuber, 2019).
      deallocation: freed slots are erased (Csordas & Schmidhuber, 2019).
      link_sharpening: sharpen forward/backward weights (Csordas & Schmidhuber, 2019).
      w_init: initializer of the interface weights; `core.Linear`'s by default.
      name: module name.
    """

    def __init__(
        self,
        memory_size: int = 128,
        word_size: int = 20,
        num_reads: int = 1,
        num_writes: int = 1,
        dtype: tf.DType = tf.float32,
        strength_op: str | Callable[[tf.Tensor], tf.Tensor] = "softplus",
        masking: bool = False,
        deallocation: bool = False,
        link_sharpening: bool = False,
        w_init: core.initializers.Initializer | None = None,
        name: str = "memory_access",
    ):
        super().__init__(name=name)
        for what, value in [
            ("memory_size", memory_size),
            ("word_size", word_size),
            ("num_reads", num_reads),
            ("num_writes", num_writes),
        ]:
            if not core.utils.is_int(value) or value < 1:
                raise ValueError(f"{core.utils.describe(self)}: {what} must be a positive int, got {value!r}")
        if isinstance(strength_op, str):
            if strength_op not in STRENGTH_OPS:
                raise ValueError(
                    f"{core.utils.describe(self)}: strength_op must be one of {sorted(STRENGTH_OPS)} or a callable, "
                    f"got {strength_op!r}"
                )
            strength_op = STRENGTH_OPS[strength_op]
        self.memory_size = memory_size
        self.word_size = word_size
        self.num_reads = num_reads
        self.num_writes = num_writes
        self.dtype = tf.as_dtype(dtype)
        if not self.dtype.is_floating:
            raise TypeError(f"{core.utils.describe(self)}: dtype must be floating point, got {self.dtype.name}")
        self._strength_op = strength_op
        self.masking = masking
        self.deallocation = deallocation
        self.link_sharpening = link_sharpening
        self._fields = self._interface_fields()
        self._field_sizes = [int(np.prod(shape)) for _, shape, _ in self._fields]
        self.interface = core.Linear(sum(self._field_sizes), w_init=w_init, name="interface")

    def _interface_fields(self) -> list[tuple[str, tuple[int, ...], Callable | None]]:
        """(name, shape without batch, activation) of each interface field, in order."""
        r, wh, w = self.num_reads, self.num_writes, self.word_size
        fields = [
            ("read_keys", (r, w), None),
            ("read_strengths", (r,), None),  # strength_op applies inside content lookup
            ("write_keys", (wh, w), None),
            ("write_strengths", (wh,), None),
            ("erase_vectors", (wh, w), tf.sigmoid),
            ("write_vectors", (wh, w), None),
            ("free_gate", (r,), tf.sigmoid),
            ("allocation_gate", (wh,), tf.sigmoid),
            ("write_gate", (wh,), tf.sigmoid),
            # Layout [backward x Wh, forward x Wh, content], softmax over the modes.
            ("read_mode", (r, 1 + 2 * wh), lambda x: tf.nn.softmax(x, axis=-1)),
        ]
        if self.masking:
            fields += [("read_masks", (r, w), tf.sigmoid), ("write_masks", (wh, w), tf.sigmoid)]
        if self.link_sharpening:
            fields += [
                ("forward_sharpness", (r, wh), addressing.oneplus),
                ("backward_sharpness", (r, wh), addressing.oneplus),
            ]
        return fields

    @property
    def interface_size(self) -> int:
        """Size of the interface vector (135 for W=16, R=4, one write head)."""
        return sum(self._field_sizes)

    @property
    def output_size(self) -> tf.TensorShape:
        return tf.TensorShape([self.num_reads, self.word_size])

    def initial_state(self, batch_size: int | tf.Tensor) -> AccessState:
        """All zeros: empty memory, no weights, no links, nothing used."""
        n, w, r, wh, dtype = self.memory_size, self.word_size, self.num_reads, self.num_writes, self.dtype
        return AccessState(
            memory=tf.zeros([batch_size, n, w], dtype),
            read_weights=tf.zeros([batch_size, r, n], dtype),
            write_weights=tf.zeros([batch_size, wh, n], dtype),
            linkage=TemporalLinkageState(
                link=tf.zeros([batch_size, wh, n, n], dtype),
                precedence_weights=tf.zeros([batch_size, wh, n], dtype),
            ),
            usage=tf.zeros([batch_size, n], dtype),
        )

    def interface_fields(self, controller_output: tf.Tensor) -> dict[str, tf.Tensor]:
        """The interface vector split into named fields [B, *shape], activations applied."""
        flat = self.interface(controller_output)
        with tf.name_scope("fields"):
            parts = tf.split(flat, self._field_sizes, axis=-1)
            fields = {}
            for (name, shape, activation), part in zip(self._fields, parts):
                part = tf.reshape(part, [-1, *shape])
                fields[name] = activation(part) if activation is not None else part
        return fields

    def __call__(self, controller_output: tf.Tensor, prev_state: AccessState) -> tuple[tf.Tensor, AccessState]:
        """One step; returns (read words [B, R, W], next state).

        Raises:
          ValueError: if `controller_output` is not [batch, features] or its size
            changes between calls.
          TypeError: if its dtype is not the module's.
        """
        read_words, state, _ = self.step_with_interface(controller_output, prev_state)
        return read_words, state

    def step_with_interface(
        self, controller_output: tf.Tensor, prev_state: AccessState
    ) -> tuple[tf.Tensor, AccessState, dict[str, tf.Tensor]]:
        """`__call__`, also returning the interface fields (gates, modes...) it used."""
        if controller_output.dtype is not self.dtype or controller_output.shape.rank != 2:
            core.utils.check_dtype(self, controller_output, self.dtype, what="controller outputs")
            core.utils.check_rank(self, controller_output, 2, what="controller outputs", layout="[batch, features]")
        # The name scopes make the steps' parts legible in graphs and profiles.
        f = self.interface_fields(controller_output)
        with tf.name_scope("usage"):
            usage = addressing.updated_usage(
                prev_state.usage, prev_state.write_weights, f["free_gate"], prev_state.read_weights
            )
        with tf.name_scope("write_weights"):
            write_weights = self._write_weights(f, prev_state.memory, usage)
        with tf.name_scope("erase_write"):
            memory = self._erase_and_write(f, prev_state, write_weights)
        with tf.name_scope("link"):
            link, precedence, forward, backward = addressing.linkage_and_directional_reads(
                prev_state.linkage.link, prev_state.linkage.precedence_weights, write_weights, prev_state.read_weights
            )
        with tf.name_scope("read_weights"):
            read_weights = self._read_weights(f, memory, forward, backward)
        with tf.name_scope("read_words"):
            read_words = tf.matmul(read_weights, memory)
        state = AccessState(
            memory=memory,
            read_weights=read_weights,
            write_weights=write_weights,
            linkage=TemporalLinkageState(link, precedence),
            usage=usage,
        )
        return read_words, state, f

    @core.no_name_scope  # in the caller's scope: the step's parts keep their names
    def _write_weights(self, f: dict, memory: tf.Tensor, usage: tf.Tensor) -> tf.Tensor:
        """w_write = g_w * (g_a * allocation + (1 - g_a) * content), per write head."""
        content = addressing.cosine_weights(
            memory, f["write_keys"], f["write_strengths"], self._strength_op, masks=f.get("write_masks")
        )
        allocation_gate = f["allocation_gate"][..., None]
        write_gate = f["write_gate"][..., None]
        with tf.name_scope("allocation"):
            allocation = addressing.write_allocation_weights(
                usage, f["allocation_gate"] * f["write_gate"], self.num_writes
            )
        return write_gate * (allocation_gate * allocation + (1.0 - allocation_gate) * content)

    @core.no_name_scope  # in the caller's scope: the step's parts keep their names
    def _erase_and_write(self, f: dict, prev_state: AccessState, write_weights: tf.Tensor) -> tf.Tensor:
        """M = M * prod_heads(1 - w e^T) + sum_heads w v^T (times psi with de-allocation)."""
        erase = 1.0 - write_weights[..., :, None] * f["erase_vectors"][..., None, :]  # [B, Wh, N, W]
        # One head's product is its factor; reduce_prod's gradient would take two cumulative products.
        erase = erase[:, 0] if self.num_writes == 1 else tf.reduce_prod(erase, axis=1)
        memory = prev_state.memory * erase
        if self.deallocation:
            retention = addressing.retention_vector(f["free_gate"], prev_state.read_weights)
            memory *= retention[..., None]
        return memory + tf.matmul(write_weights, f["write_vectors"], transpose_a=True)

    @core.no_name_scope  # in the caller's scope: the step's parts keep their names
    def _read_weights(self, f: dict, memory: tf.Tensor, forward: tf.Tensor, backward: tf.Tensor) -> tf.Tensor:
        """Mix of content, forward and backward ([B, R, Wh, N]) weights by the read modes."""
        content = addressing.cosine_weights(
            memory, f["read_keys"], f["read_strengths"], self._strength_op, masks=f.get("read_masks")
        )
        if self.link_sharpening:
            forward = addressing.sharpen(forward, f["forward_sharpness"])
            backward = addressing.sharpen(backward, f["backward_sharpness"])
        wh = self.num_writes
        mode = f["read_mode"]  # [B, R, 2 Wh + 1]: backward x Wh, forward x Wh, content
        # The directional weights mixed by their modes in one [1, 2 Wh] x [2 Wh, N] product per read head.
        directional = tf.matmul(mode[..., None, : 2 * wh], tf.concat([backward, forward], axis=2))[..., 0, :]
        return mode[..., 2 * wh, None] * content + directional
