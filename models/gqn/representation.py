"""GQN's representation networks: one view and its camera in, a scene representation out.

Eslami et al., "Neural scene representation and rendering", Science 360 (2018),
supplementary Figure S1. Both networks read a [N, S, S, 3] image and its camera
[N, 7] (position and the sines and cosines of yaw and pitch); S must be a multiple of 4.

"tower" (the paper's default) keeps a spatial map at a quarter of the image size:

    a = relu(conv2x2/2(x))                           S/2, C channels
    skip = relu(conv2x2/2(a))                        S/4, C
    b = relu(conv2x2/2(relu(conv3x3(a)))) + skip     S/4, C      (the 3x3 conv has C/2)
    b = concat(b, camera broadcast over S/4 x S/4)   S/4, C + 7
    skip = relu(conv3x3(b))                          S/4, C
    c = relu(conv3x3(relu(conv3x3(b)))) + skip       S/4, C      (the first 3x3 conv has C/2)
    r = relu(conv1x1(c))                             S/4, C

"pool" is the tower followed by a mean over the spatial axes: a [N, 1, 1, C] vector,
which the generator broadcasts back over its state.

The paper's C is 256 (so the tower's map is 16x16x256 for 64x64 images). A scene's
representation is the sum over its context views (`GQN.represent`), which makes it
independent of their order and lets views be added one at a time.
"""

import tensorflow as tf

import core

CAMERA_SIZE = 7


class Tower(core.Module):
    """The "tower" representation network: (image [N, S, S, 3], camera [N, 7]) -> [N, S/4, S/4, C].

    Args:
      channels: C, the channels of the representation (256 in the paper); the two
        inner 3x3 convolutions have C / 2.
      name: module name.
    """

    def __init__(self, channels: int = 256, name: str | None = None):
        super().__init__(name=name)
        self.channels = core.utils.positive_int(self, channels, "channels")
        if channels < 2:
            raise ValueError(f"{core.utils.describe(self)}: channels must be at least 2, got {channels}")
        half = channels // 2
        self.conv_0 = core.Conv2D(channels, 2, stride=2, padding="VALID", name="conv_0")
        self.conv_1 = core.Conv2D(channels, 2, stride=2, padding="VALID", name="conv_1")
        self.conv_2 = core.Conv2D(half, 3, name="conv_2")
        self.conv_3 = core.Conv2D(channels, 2, stride=2, padding="VALID", name="conv_3")
        self.conv_4 = core.Conv2D(channels, 3, name="conv_4")
        self.conv_5 = core.Conv2D(half, 3, name="conv_5")
        self.conv_6 = core.Conv2D(channels, 3, name="conv_6")
        self.conv_7 = core.Conv2D(channels, 1, name="conv_7")

    def __call__(self, image: tf.Tensor, camera: tf.Tensor) -> tf.Tensor:
        """The representation of each view: [N, S/4, S/4, channels].

        Raises:
          ValueError: if `image` is not [N, S, S, 3] with S a multiple of 4, or `camera`
            is not [N, 7] with the same N.
        """
        check_view(self, image, camera)
        relu = tf.nn.relu
        a = relu(self.conv_0(image))
        skip = relu(self.conv_1(a))
        b = relu(self.conv_3(relu(self.conv_2(a)))) + skip
        b = tf.concat([b, broadcast(camera, tf.shape(b)[1:3])], axis=-1)
        skip = relu(self.conv_4(b))
        c = relu(self.conv_6(relu(self.conv_5(b)))) + skip
        return relu(self.conv_7(c))


class Pool(Tower):
    """The "pool" representation network: the tower averaged over space, [N, 1, 1, C].

    Args:
      channels: C, the channels of the representation (256 in the paper).
      name: module name.
    """

    def __call__(self, image: tf.Tensor, camera: tf.Tensor) -> tf.Tensor:
        """The representation of each view: [N, 1, 1, channels].

        Raises:
          ValueError: as `Tower`.
        """
        return tf.reduce_mean(super().__call__(image, camera), axis=[1, 2], keepdims=True)


def broadcast(vector: tf.Tensor, spatial: tf.Tensor | tuple[int, int]) -> tf.Tensor:
    """[N, C] (or [N, 1, 1, C]) repeated over `spatial` = (height, width): [N, height, width, C]."""
    vector = tf.reshape(vector, [-1, 1, 1, vector.shape[-1]])
    return tf.tile(vector, [1, spatial[0], spatial[1], 1])


def check_view(module: core.Module, image: tf.Tensor, camera: tf.Tensor) -> None:
    """Images [N, S, S, 3] with S a multiple of 4 and cameras [N, 7], or a ValueError naming `module`."""
    core.utils.check_rank(module, image, 4, what="images", layout="[views, height, width, 3]")
    core.utils.check_rank(module, camera, 2, what="cameras", layout="[views, 7]")
    core.utils.check_floating(module, image, what="images")
    height, width, channels = image.shape[1:]
    if channels not in (None, 3) or (height is not None and height % 4) or height != width:
        raise ValueError(
            f"{core.utils.describe(module)}: images must be square RGB with a side divisible by 4, "
            f"[views, S, S, 3]; got shape {image.shape}"
        )
    core.utils.check_size(module, camera, 1, CAMERA_SIZE, what="cameras", meaning="camera size")
    if image.shape[0] is not None and camera.shape[0] is not None and image.shape[0] != camera.shape[0]:
        raise ValueError(
            f"{core.utils.describe(module)}: {image.shape[0]} images but {camera.shape[0]} cameras; "
            "give one camera per image"
        )
