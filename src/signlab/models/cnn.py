"""A Keras 3 CNN built from a spec: conv blocks, dense layers, dropout, batch norm, L2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import keras


class ConvBlock(BaseModel):
    """Conv2D (ReLU) -> [Dropout] -> [BatchNorm] -> [MaxPool 2x2]: the paper's layer order."""

    model_config = ConfigDict(extra="forbid")
    filters: int = Field(ge=1, le=1024)
    kernel_size: int = Field(3, ge=1, le=7)
    padding: Literal["same", "valid"] = "same"
    batch_norm: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    pool: bool = True


class CNNSpec(BaseModel):
    """Architecture and training settings of one CNN."""

    model_config = ConfigDict(extra="forbid")
    family: Literal["cnn"] = "cnn"
    blocks: list[ConvBlock] = Field(min_length=1, max_length=6)
    pool_padding: Literal["same", "valid"] = "same"
    dense_units: list[Annotated[int, Field(ge=1, le=8192)]] = Field(default_factory=lambda: [32], max_length=4)
    dense_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    l2_dense: float = Field(0.0, ge=0.0)
    l2_conv: float = Field(0.0, ge=0.0)
    n_classes: Literal[24, 25] = 24
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(128, ge=1, le=8192)
    epochs: int = Field(20, ge=1, le=1000)
    augment: bool = False
    adaptive_lr: bool = False
    early_stopping: bool = False
    patience: int = Field(5, ge=1)
    # Keras' default 0.99 leaves the moving statistics ~40% at their initial values after 90
    # steps (3 epochs of a 200-per-letter subset), so early validation of batch-norm networks
    # scores at chance while they have learned: pruning then discards them for an artefact.
    # 0.9 (PyTorch's default) follows the data within ~30 steps; on full data (170 steps an
    # epoch) both settle within the first epoch.
    bn_momentum: float = Field(0.9, gt=0.0, lt=1.0)
    # A learning rate per epoch, replayed (the last value holds after its end); set, it
    # replaces adaptive_lr. A study's refit replays the schedule its chosen trial followed.
    lr_schedule: list[float] | None = Field(None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _fits_the_image(self) -> CNNSpec:
        """Every block must leave something of the 28x28 input (Keras would fail mid-build)."""
        size = 28
        for i, block in enumerate(self.blocks):
            if block.padding == "valid":
                size -= block.kernel_size - 1
            if block.pool and size >= 1:
                size = -(-size // 2) if self.pool_padding == "same" else size // 2
            if size < 1:
                raise ValueError(f"blocks.{i}: nothing of the 28x28 image is left after this block "
                                 "(fewer blocks, pooling or 'valid' padding, or smaller kernels)")
        return self


def cnn_params(spec: CNNSpec) -> int:
    """The parameter count of the network `spec` builds (Keras's count: batch-norm statistics
    included), without training it."""
    return int(build_cnn(spec).count_params())


def build_cnn(spec: CNNSpec, name: str = "cnn", fused_batch_norm: bool = False) -> keras.Model:
    """A compiled-ready Sequential model for 28x28x1 inputs in [0, 1].

    `fused_batch_norm`: batch norm through TensorFlow's fused kernel (`models.fused_batch_norm`),
    for the model that trains; the model that is kept or saved has Keras's own layer."""
    import keras  # here, not at import: commands that build no model start without TensorFlow

    if fused_batch_norm:
        from signlab.models.fused_batch_norm import FusedBatchNormalization as BatchNorm
    else:
        BatchNorm = keras.layers.BatchNormalization  # noqa: N806 (a class)

    conv_reg = keras.regularizers.L2(spec.l2_conv) if spec.l2_conv else None
    dense_reg = keras.regularizers.L2(spec.l2_dense) if spec.l2_dense else None
    layers: list[keras.layers.Layer] = [keras.Input((28, 28, 1))]
    for block in spec.blocks:
        layers.append(
            keras.layers.Conv2D(
                block.filters,
                block.kernel_size,
                padding=block.padding,
                activation="relu",
                kernel_regularizer=conv_reg,
            )
        )
        if block.dropout:
            layers.append(keras.layers.Dropout(block.dropout))
        if block.batch_norm:
            layers.append(BatchNorm(momentum=spec.bn_momentum))
        if block.pool:
            layers.append(keras.layers.MaxPooling2D(2, strides=2, padding=spec.pool_padding))
    layers.append(keras.layers.Flatten())
    for units in spec.dense_units:
        layers.append(keras.layers.Dense(units, activation="relu", kernel_regularizer=dense_reg))
        if spec.dense_dropout:
            layers.append(keras.layers.Dropout(spec.dense_dropout))
    layers.append(
        keras.layers.Dense(spec.n_classes, activation="softmax", kernel_regularizer=dense_reg)
    )
    return keras.Sequential(layers, name=name)
