"""Augmentation: random affine transforms for CNN training (on the fly, in tf.data), and
seeded perturbed copies for the MLP (the paper's NN 4) and for the robustness test set.

Keras' RandomRotation, RandomZoom and RandomTranslation layers each resample the image;
chained, they blur a 28x28 image visibly (and cost test accuracy). ImageDataGenerator, which
the paper used, composed one affine transform and resampled once; so does `augment_batch`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# The paper's CNN settings (as with ImageDataGenerator): rotation ±10°, zoom 10%, shifts 10%.
ROTATION_DEGREES = 10.0
ZOOM = 0.1
SHIFT = 0.1


def affine_params(n, seed):
    """Random (angle in radians, zoom x, zoom y, shift x, shift y in pixels) for `n` images,
    drawn as ImageDataGenerator(rotation_range=10, zoom_range=0.1, width/height_shift_range=0.1).
    `seed` is a stateless seed pair: the same pair gives the same draws."""
    import tensorflow as tf

    u = tf.random.stateless_uniform([5, n], seed=seed, minval=-1.0, maxval=1.0)
    angle = u[0] * ROTATION_DEGREES * (np.pi / 180.0)
    zoom_x, zoom_y = 1.0 + u[1] * ZOOM, 1.0 + u[2] * ZOOM
    shift_x, shift_y = u[3] * SHIFT * 28.0, u[4] * SHIFT * 28.0
    return angle, zoom_x, zoom_y, shift_x, shift_y


def affine_transforms(angle, zoom_x, zoom_y, shift_x, shift_y, size: int = 28):
    """Per-image 8-number projective transforms (output pixel -> input pixel), rotation and
    zoom about the centre followed by a shift: one resampling, as ImageDataGenerator does."""
    import tensorflow as tf

    c = (size - 1) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0, a1 = zoom_x * cos, -zoom_y * sin
    b0, b1 = zoom_x * sin, zoom_y * cos
    a2 = c - (a0 * c + a1 * c) - shift_x
    b2 = c - (b0 * c + b1 * c) - shift_y
    zeros = tf.zeros_like(angle)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_batch(images, seed):
    """Randomly rotate (±10°), zoom (±10% per axis) and shift (±10%) a batch (N, 28, 28, 1)
    of float images in one bilinear resampling with nearest fill; `seed` is a stateless seed
    pair (see `augment_dataset`)."""
    import keras
    import tensorflow as tf

    transforms = affine_transforms(*affine_params(tf.shape(images)[0], seed))
    return keras.ops.image.affine_transform(
        images, transforms, interpolation="bilinear", fill_mode="nearest", data_format="channels_last"
    )


def augment_dataset(batches, seed: int):
    """Augment a batched tf.data (images, labels) pipeline: new draws every epoch, the same
    draws for the same seed and epoch."""
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(batches, seeds).map(
        lambda batch, pair: (augment_batch(batch[0], pair), batch[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def perturb(
    images: np.ndarray,
    seed: int,
    brightness: float = 0.2,
    contrast: float = 0.2,
    shear_degrees: float = 10.0,
    shift: float = 0.1,
) -> np.ndarray:
    """One perturbed copy of uint8 images (N, 28, 28): brightness, contrast, shear and shift.

    The paper's NN 4 used such copies (PIL: brightness, contrast, position by shearing);
    the same function, with a fixed seed, makes the augmented test set.
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    out = np.empty_like(images)
    shears = np.tan(np.deg2rad(rng.uniform(-shear_degrees, shear_degrees, n)))
    shifts = rng.uniform(-shift, shift, (n, 2)) * np.array(images.shape[1:])
    gains = rng.uniform(1 - contrast, 1 + contrast, n)
    offsets = rng.uniform(-brightness, brightness, n) * 255.0
    centre = (np.array(images.shape[1:]) - 1) / 2.0
    for i in range(n):
        matrix = np.array([[1.0, shears[i]], [0.0, 1.0]])  # shear along x as y changes
        offset = centre - matrix @ centre - shifts[i]
        moved = ndimage.affine_transform(
            images[i].astype(np.float32), matrix, offset=offset, order=1, mode="nearest"
        )
        mean = moved.mean()
        moved = (moved - mean) * gains[i] + mean + offsets[i]
        out[i] = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    return out


def augmented_copies(
    images: np.ndarray, labels: np.ndarray, copies: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The originals followed by `copies` perturbed copies of each (NN 4: copies=3)."""
    extra = [perturb(images, seed=seed + k) for k in range(1, copies + 1)]
    return np.concatenate([images, *extra]), np.concatenate([labels] * (copies + 1))
