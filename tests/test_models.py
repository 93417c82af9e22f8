"""Model builders, presets, augmentation and evaluation pieces (no MLflow); the tests on the
real data, or that train, are marked slow."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from signlab.errors import UserError
from signlab.models.augment import augmented_copies, perturb
from signlab.models.classifier import PayloadError, as_images
from signlab.models.cnn import build_cnn
from signlab.models.evaluate import Evaluation, confusion_figure
from signlab.models.mlp import build_mlp, count_params, train_one_epoch
from signlab.models.presets import EXPECTED_PARAMS, make_spec
from signlab.models.train import NonFiniteLoss, fit
from signlab.runs.references import load_references, reference_spec, reproducible


@pytest.mark.parametrize("preset", ["cnn1", "cnn2", "cnn3", "tutorial", "tiny"])
def test_cnn_presets_match_published_parameter_counts(preset):
    model = build_cnn(make_spec(preset))
    assert model.count_params() == EXPECTED_PARAMS[preset]
    assert model.output_shape == (None, 25 if preset == "tutorial" else 24)


def test_cnn_spec_varies_widths_dropout_l2():
    spec = make_spec("cnn3", blocks=[{"filters": 16, "batch_norm": True}, {"filters": 8, "dropout": 0.5}],
                     dense_units=[48], dense_dropout=0.25, l2_dense=0.01, l2_conv=0.001)
    model = build_cnn(spec)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 2 and kinds.count("BatchNormalization") == 1 and kinds.count("Dropout") == 2
    assert model.layers[0].kernel_regularizer is not None
    # conv 16: 160, BN 64, conv 8: 1160, flatten 7*7*8=392 -> dense 48: 18864, out 24: 1176
    assert model.count_params() == 160 + 64 + 1160 + 18864 + 1176


@pytest.mark.slow
def test_mlp_presets(train_split):
    nn1, nn2, nn3, nn4 = (make_spec(p) for p in ("nn1", "nn2", "nn3", "nn4"))
    assert nn1.hidden_layers == [100] and not nn1.normalise and nn1.epochs == 300 and not nn1.early_stopping
    assert nn2.hidden_layers == [256, 128] and nn2.normalise and nn2.early_stopping
    assert nn3.alpha == 0.1 and nn4.augment and nn4.augment_copies == 3
    clf = build_mlp(nn2)
    x = train_split.images[:200].reshape(200, -1) / 255.0
    clf.partial_fit(x, np.arange(200) % 24, classes=np.arange(24))
    assert count_params(clf) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 24 + 24


@pytest.mark.slow
def test_an_mlp_epoch_leaves_no_subnormal_weights(train_split):
    # Subnormal float32 weights made full-data MLP epochs 5x slower; a dead unit's weights and
    # Adam moments stay subnormal through an epoch unless flushed.
    x = (train_split.images[:2000].reshape(2000, -1) / 255.0).astype(np.float32)
    y, classes = train_split.labels[:2000], np.arange(25)
    clf, rng = build_mlp(make_spec("nn2")), np.random.default_rng(0)
    train_one_epoch(clf, x, y, classes, rng)
    clf.coefs_[0][:, 0], clf.intercepts_[0][0] = 1e-40, -100.0  # unit 0: dead, weights subnormal
    clf._optimizer.ms[0][:, 0] = 1e-41
    loss = train_one_epoch(clf, x, y, classes, rng)
    tiny = np.finfo(np.float32).tiny
    states = [*clf.coefs_, *clf.intercepts_, *clf._optimizer.ms, *clf._optimizer.vs]
    assert all(a.dtype == np.float32 and not ((a != 0) & (np.abs(a) < tiny)).any() for a in states)
    assert 0 < loss < 3.3  # the pass's mean loss, below chance (ln 25 = 3.2) plus the L2 term


def test_an_mlp_epoch_of_a_few_rows_warns_nothing():
    """A last `partial_fit` call of fewer rows than a batch (here every call: 30 rows, batches of
    200) is a smaller batch, not something to warn a user about on the console."""
    rng = np.random.default_rng(0)
    x, y = rng.random((30, 784), dtype=np.float32), np.arange(30) % 25
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_one_epoch(build_mlp(make_spec("nn2")), x, y, np.arange(25), rng)
    assert [str(w.message) for w in caught] == []


def test_bad_spec_fields_are_named():
    with pytest.raises(UserError, match="unknown preset 'cnn9'"):
        make_spec("cnn9")
    with pytest.raises(UserError, match=r"dense_dropout: .*less than 1 \(got 1.5\)"):
        make_spec("cnn3", dense_dropout=1.5)
    with pytest.raises(UserError, match="colour: Extra inputs are not permitted"):
        make_spec("nn2", colour="red")
    with pytest.raises(UserError, match="preset 'nn2' is a mlp, not a cnn"):
        make_spec("nn2", family="cnn")


def test_reference_rows():
    rows = reproducible()
    assert rows == ["nn1", "nn2", "nn3", "nn4", "cnn1", "cnn1_aug", "cnn2", "cnn2_aug", "cnn3", "cnn3_aug", "tutorial", "knn"]
    knn = reference_spec("knn", epochs=5)  # --epochs is for the rows that train
    assert knn.family == "knn" and knn.n_neighbors == 1 and knn.epochs == 1
    aug = reference_spec("cnn3_aug")
    assert aug.augment and aug.adaptive_lr and aug.blocks[0].filters == 64
    assert not reference_spec("cnn3").augment
    refs = {r.key: r for r in load_references()}
    assert refs["cnn3_aug"].accuracy == 0.999 and refs["cnn3_aug"].params == 39824
    assert refs["dasgupta"].tuned_on_test and refs["cnn1_aug"].tuned_on_test and not refs["cnn3"].tuned_on_test
    assert len(refs) == 16


@pytest.mark.slow
def test_cnn_augmentation_is_one_seeded_resampling_per_epoch(test_split):
    import keras
    import tensorflow as tf

    from signlab.models.augment import affine_transforms, augment_dataset

    x = (test_split.images[:16].astype("float32") / 255.0)[..., None]
    zero, one = tf.zeros([16]), tf.ones([16])
    identity = keras.ops.image.affine_transform(x, affine_transforms(zero, one, one, zero, zero))
    assert np.array_equal(np.asarray(identity), x)  # no resampling blur when nothing moves
    # a quarter turn about the centre moves pixels exactly as np.rot90 does
    quarter = keras.ops.image.affine_transform(x, affine_transforms(zero + np.pi / 2, one, one, zero, zero))
    assert np.allclose(np.asarray(quarter)[..., 0], np.rot90(x[..., 0], k=1, axes=(1, 2)), atol=1e-5)

    def batches(seed):
        ds = tf.data.Dataset.from_tensor_slices((x, np.arange(16))).batch(16)
        return augment_dataset(ds, seed)

    ds = batches(7)
    epoch1, epoch2 = (next(iter(ds))[0].numpy() for _ in range(2))
    assert epoch1.shape == x.shape and not np.allclose(epoch1, x)
    assert not np.allclose(epoch1, epoch2), "each epoch draws new transforms"
    assert np.allclose(next(iter(batches(7)))[0].numpy(), epoch1), "same seed, same draws"
    assert np.array_equal(next(iter(batches(7)))[1].numpy(), np.arange(16)), "labels untouched"


def test_perturbed_copies_are_seeded():
    """On 50 seeded 28x28 gradients with noise (the function's contract needs no real images)."""
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(28), np.arange(28)) * 4
    images = np.clip(ramp + rng.integers(-20, 21, (50, 28, 28)), 0, 255).astype(np.uint8)
    labels = rng.integers(0, 24, 50)
    a, b = perturb(images, seed=5), perturb(images, seed=5)
    assert np.array_equal(a, b) and a.dtype == np.uint8 and not np.array_equal(a, images)
    assert not np.array_equal(a, perturb(images, seed=6))
    x, y = augmented_copies(images, labels, copies=3, seed=0)
    assert x.shape == (200, 28, 28) and np.array_equal(y, np.tile(labels, 4))
    assert np.array_equal(x[:50], images)


@pytest.mark.slow
def test_diverging_training_raises(train_split):
    from signlab.data.splits import stratified_subset, validation_split

    x, y = stratified_subset(train_split.images, train_split.labels, 10)
    train, val = validation_split(x, y, 0.2)
    spec = make_spec("tutorial", l2_dense=1e38, epochs=2, batch_size=32)  # L2 term overflows
    with pytest.raises(NonFiniteLoss, match="loss is nan at epoch 0: training diverged"):
        fit(spec, train, val)


def test_payload_checks():
    assert as_images(np.zeros(784)[None]).shape == (1, 28, 28)
    assert as_images(np.zeros((28, 28))).shape == (1, 28, 28)
    with pytest.raises(PayloadError, match="784 pixels"):
        as_images(np.zeros((2, 700)))
    with pytest.raises(PayloadError, match="image 1: pixel 3 is 300, outside 0-255"):
        as_images(np.vstack([np.zeros(784), np.r_[0, 0, 300, np.zeros(781)]]))


def test_worst_confusions_are_named():
    confusion = np.eye(24, dtype=int) * 10
    confusion[16, 19] = 12  # R read as U (letters index: no J)
    confusion[0, 4] = 3  # A read as E
    ev = Evaluation(0.9, 0.9, 0.9, {}, confusion)
    assert ev.worst_confusions() == ["R read as U: 12 of 22", "A read as E: 3 of 13"]
    fig = confusion_figure(ev, "t")
    assert list(fig.data[0].x) == list(fig.data[0].y) and fig.data[0].x[9] == "K"


def test_cnn_predictions_in_batches_match_the_whole_and_pipelines_do_not_autotune(test_split):
    """More images than one compiled call takes come back in order, as one Keras call on them
    all gives them; the training and validation pipelines run with tf.data's autotuning off
    (its thread made every epoch's iterator wait at its end)."""
    from signlab.models.keras_training import PREDICT_BATCH, _dataset, predict_proba

    n = PREDICT_BATCH + 300
    model = build_cnn(make_spec("tiny"))
    x = (test_split.images[:n].astype("float32") / 255.0)[..., None]
    batched = predict_proba(model, x)
    assert batched.shape == (n, 24)
    assert np.allclose(batched, np.asarray(model(x, training=False)), atol=1e-5)
    assert predict_proba(model, x[:0]).shape == (0, 24)
    ds = _dataset(test_split.images[:64], test_split.labels[:64], 24, 32, shuffle_seed=1, augment_seed=1)
    assert ds.options().autotune.enabled is False
    assert [b[0].shape[0] for b in ds] == [32, 32]


def test_fused_batch_norm_computes_what_keras_batch_norm_does(test_split):
    """A training step through the fused kernel gives Keras's outputs, gradients and moving
    statistics (to float32 round-off), on real images after a real convolution; inference and
    anything the kernel cannot take go through Keras's own code."""
    import keras
    import tensorflow as tf

    from signlab.models.fused_batch_norm import FusedBatchNormalization

    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(16, 3, padding="same")  # linear: no channel left constant
    x = conv(tf.constant(test_split.images[:4, ..., None] / 255.0, tf.float32))
    layers = [keras.layers.BatchNormalization(momentum=0.9), FusedBatchNormalization(momentum=0.9)]
    for layer in layers:
        layer.build(x.shape)
        layer.set_weights([np.linspace(0.5, 1.5, 16), np.linspace(-0.2, 0.2, 16),
                           np.zeros(16), np.zeros(16)])  # moving stats: the step's own
    outputs, grads = [], []
    upstream = tf.constant(np.random.default_rng(0).normal(size=x.shape), tf.float32)
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        outputs.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])
    keras_layer, fused = layers
    assert np.allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
    for keras_grad, fused_grad in zip(*grads, strict=True):
        assert np.allclose(keras_grad, fused_grad, atol=1e-4 * np.abs(keras_grad).max())
    assert keras_layer.moving_variance.numpy().min() > 0  # the step moved them...
    for keras_stat, fused_stat in zip(keras_layer.weights[2:], fused.weights[2:], strict=True):
        assert np.allclose(keras_stat.numpy(), fused_stat.numpy(), rtol=2e-5, atol=0)  # ...alike
    assert np.allclose(keras_layer(x, training=False), fused(x, training=False), atol=1e-5)
    odd = tf.concat([x, x[..., :2]], axis=-1)  # 18 channels: oneDNN's slow kernel, so Keras's path
    assert fused._fusable(x, True, None) and not FusedBatchNormalization()._fusable(odd, True, None)
    flat = tf.reshape(x, [4, -1])  # 2-D: not the fused kernel's; Keras's path, same result
    for layer in (keras.layers.BatchNormalization(), FusedBatchNormalization()):
        outputs.append(layer(flat, training=True).numpy())
    assert np.allclose(outputs[-2], outputs[-1], atol=1e-5)


@pytest.mark.slow
def test_a_trained_cnn_is_handed_on_with_keras_layers_and_its_optimizer_state(train_split):
    """Training runs the fused batch norm; the model it returns (evaluated, logged, served) is
    the same network with Keras's own layer, compiled, holding the trained weights and Adam's
    state after every step."""
    import keras

    from signlab.data.splits import stratified_subset, validation_split
    from signlab.models.fused_batch_norm import FusedBatchNormalization

    x, y = stratified_subset(train_split.images, train_split.labels, 12)
    train, val = validation_split(x, y, 0.25)
    result = fit(make_spec("cnn3", epochs=2, batch_size=16), train, val, seed=3)
    model = result.model.estimator
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and not any(isinstance(layer, FusedBatchNormalization) for layer in norms)
    assert not np.allclose(norms[0].moving_mean.numpy(), 0.0)  # trained statistics came along
    assert int(model.optimizer.iterations.numpy()) == 2 * -(-len(train[0]) // 16)
    assert model.compiled_loss is not None or model.loss == "sparse_categorical_crossentropy"
    assert result.model.predict_labels(val[0]).shape == val[1].shape


def test_cnn_training_runs_several_steps_a_call_and_trains_the_same_network(train_split, monkeypatch):
    """Keras runs `STEPS_PER_EXECUTION` training steps a call: the trained weights are bit for
    bit those of one step a call (a last, shorter call included), and the network handed on
    (here without batch norm: the trained model itself) is set back to one step a call, its
    saved compile config untouched."""
    from signlab.data.splits import stratified_subset, validation_split
    from signlab.models import keras_training

    x, y = stratified_subset(train_split.images, train_split.labels, 12)
    train, val = validation_split(x, y, 0.25)
    spec = make_spec("cnn2", epochs=2, batch_size=16)  # 14 batches an epoch: calls of 8 and 6
    several_steps = keras_training.STEPS_PER_EXECUTION
    assert several_steps > 1 and -(-len(train[0]) // 16) % several_steps
    trained = {}
    for steps in (1, several_steps):
        monkeypatch.setattr(keras_training, "STEPS_PER_EXECUTION", steps)
        trained[steps] = fit(spec, train, val, seed=4).model.estimator
    one, several = trained[1], trained[several_steps]
    for a, b in zip(one.get_weights(), several.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(several.optimizer.iterations.numpy()) == 2 * -(-len(train[0]) // 16)
    assert several.steps_per_execution == 1 and several.train_function is None
    assert several.get_compile_config().get("steps_per_execution", 1) == 1
