"""Batch normalization through TensorFlow's fused kernel, for the networks that train.

Keras 3's `BatchNormalization` computes a training batch's moments and the normalization as
separate operations (`ops.moments`, `ops.batch_normalization`), each a pass over the
activations and another in the backward pass. After the first convolution of a CNN on 28x28
images (CNN 3: 64 channels at full size) those passes are about half of a training step on
these CPUs. TensorFlow's `FusedBatchNormV3` does the same
arithmetic in one kernel each way (oneDNN's on x86): measured on CNN 3, batch 128, 2 cores,
54-58 ms a step with Keras's layer against 36 ms with this one, and 30-31 ms with no batch
norm at all (docs/benchmarks.md, "Batch norm in one kernel"). The kernel is fast only for
channel counts that are multiples of 4 (`CHANNEL_MULTIPLE`); other counts keep Keras's code.

The layer differs from Keras's only in how a training step computes: the same weights, the
same moving statistics (Keras 3 keeps the batch's biased variance; the fused kernel returns
the unbiased one, scaled back here), inference through Keras's own code. It is never saved:
the model that training hands on is rebuilt with Keras's layer and these weights
(`keras_training.plain_copy`), so logged models load without signlab.

Keras has no fused option of its own (Keras 2's `fused=True` went with Keras 3), which is why
this is written here.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Measured (benchmarks/batch_norm_step.py --channels, 2 cores with AVX-512), a batch-norm
# training step (forward and backward, 128 images): 28x28x64 9.2 ms fused against 26.4 ms
# Keras's, 28x28x20 3.4 against 9.0; but 28x28x18 14.5 against 8.3 and 14x14x46 6.9 against
# 5.7: every multiple of 4 tried was 1.3-3.5x faster fused, every other count 1.1-1.8x slower.
CHANNEL_MULTIPLE = 4


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training steps on 4-D channels-last float32
    inputs with a multiple of 4 channels run TensorFlow's fused kernel; anything else goes
    through Keras's code."""

    def call(self, inputs, training=None, mask=None):  # noqa: ANN001, ANN201 (Keras's signature)
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels], inputs.dtype)
        beta = self.beta if self.center else tf.zeros([channels], inputs.dtype)
        outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), unbiased.dtype)
        variance = unbiased * (count - 1.0) / count  # Keras 3 averages the biased variance
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs

    def _fusable(self, inputs, training, mask) -> bool:  # noqa: ANN001
        """A training step the fused kernel computes exactly as Keras's layer would, and faster:
        oneDNN's fast kernel takes channel counts that are multiples of 4; for others it falls
        back to a generic one, slower than Keras's operations (`CHANNEL_MULTIPLE`)."""
        return bool(training) and self.trainable and mask is None and not self.renorm \
            and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3) \
            and inputs.dtype == tf.float32 and self.compute_dtype == "float32" \
            and inputs.shape[-1] is not None and inputs.shape[-1] % CHANNEL_MULTIPLE == 0
