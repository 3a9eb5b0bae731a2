"""model.pretrained's weight copying: by name and shape, across model names, from every file kind."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasflow import models
from kerasflow.errors import ConfigError, ModelError
from kerasflow.models import pretrained

CNN = {"width": 4, "dense_units": 8}


def _cnn(classes=5, shape=(16, 16, 1)):
    keras.utils.set_random_seed(1)
    return models.build("simple_cnn", shape, classes, **CNN)


def _weights(model, name):
    return [np.asarray(w) for w in model.get_layer(name).get_weights()]


def test_classifier_backbone_starts_a_unet_encoder(tmp_path):
    keras.utils.set_random_seed(1)
    source = models.build("resnet18", (32, 32, 3), 5, width_multiplier=0.125)
    source.save(tmp_path / "resnet.keras")
    target = models.build(
        "unet", (32, 32, 3), 3, encoder="resnet18", encoder_params={"width_multiplier": 0.125}
    )
    report = pretrained.copy_weights(target, pretrained.read_weights(tmp_path / "resnet.keras"))
    # Every encoder conv and BN came from the classifier; its dense head has no place here.
    assert report.prefixes == ("resnet18_", "unet_encoder_")
    weighted = [layer.name for layer in pretrained.weighted_layers(source)]
    head = pretrained.head_layers(source)
    assert head == ["resnet18_logits"] and report.unused == head
    assert sorted(report.loaded) == sorted(
        n.replace("resnet18_", "unet_encoder_", 1) for n in weighted if n not in head
    )
    assert report.new and all(not n.startswith("unet_encoder_") for n in report.new)
    assert not report.skipped
    for name in ("stem_conv", "stem_bn"):
        got = _weights(target, f"unet_encoder_{name}")
        want = _weights(source, f"resnet18_{name}")
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_head_is_rebuilt_for_other_classes_and_kept_for_the_same(tmp_path):
    source = _cnn()
    src = pretrained.from_model(source, "src", class_names=list("abcde"))
    target = _cnn()
    keras.utils.set_random_seed(2)
    target = models.build("simple_cnn", (16, 16, 1), 5, **CNN)
    before = _weights(target, "simple_cnn_logits")
    report = pretrained.copy_weights(target, src, class_names=list("vwxyz"))
    assert "simple_cnn_logits" in report.skipped
    assert "head rebuilt: classes" in report.skipped["simple_cnn_logits"]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(_weights(target, "simple_cnn_logits"), before, strict=True)
    )
    assert "simple_cnn_fc" in report.loaded
    same = pretrained.copy_weights(target, src, class_names=list("abcde"))
    assert "simple_cnn_logits" in same.loaded and not same.skipped
    # A different number of classes: shapes decide, with the shapes in the reason.
    ten = models.build("simple_cnn", (16, 16, 1), 10, **CNN)
    other = pretrained.copy_weights(ten, pretrained.from_model(source, "src"))
    assert other.skipped["simple_cnn_logits"].startswith("shape [(8, 5), (5,)]")
    params = other.as_params()
    assert params["pretrained.loaded_layers"] == 9 and params["pretrained.skipped_layers"] == 1


def test_a_layout_that_matches_nothing_is_an_error():
    cnn = models.build("simple_cnn", (16, 16, 1), 5, width=5, dense_units=7)
    source = pretrained.from_model(cnn, "cnn")
    target = models.build("mobilenet_v1", (32, 32, 3), 5, alpha=0.125)
    with pytest.raises(ModelError, match="no layer of 'mobilenet_v1' matches"):
        pretrained.copy_weights(target, source)


def test_keras3_weights_file_matches_by_saving_key(tmp_path):
    source = _cnn()
    source.save_weights(tmp_path / "cnn.weights.h5")
    target = models.build("simple_cnn", (16, 16, 1), 7, **CNN)  # other head size
    src = pretrained.read_weights(tmp_path / "cnn.weights.h5")
    assert src.positional
    report = pretrained.copy_weights(target, src)
    assert len(report.loaded) == 9 and list(report.skipped) == ["simple_cnn_logits"]
    assert np.array_equal(
        _weights(target, "simple_cnn_block2_conv2")[0],
        _weights(source, "simple_cnn_block2_conv2")[0],
    )


def test_bad_sources_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        pretrained.read_weights(tmp_path / "missing.keras")
    (tmp_path / "x.keras").write_text("not a zip")
    with pytest.raises(ConfigError, match="not a .keras archive"):
        pretrained.read_weights(tmp_path / "x.keras")
    with pytest.raises(ConfigError, match="keras_app"):
        pretrained.imagenet_weights("resnet50", {}, (32, 32, 3))


APP = {"application": "MobileNetV2", "alpha": 0.35}


def test_imagenet_offline_names_the_expected_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setattr(keras.utils, "get_file", _offline)
    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", _offline)
    with pytest.raises(ConfigError) as info:
        pretrained.imagenet_weights("keras_app", APP, (96, 96, 3))
    message = str(info.value)
    expected = tmp_path / "kh" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels"
    assert f"{expected}_0.35_96_no_top.h5" in message
    assert "local weights file" in message


def _offline(fname=None, origin=None, **kwargs):
    # What keras.utils.get_file raises without a network (this machine has none either;
    # the stub only makes the test independent of DNS timeouts elsewhere).
    raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] name resolution")


def test_a_local_keras_applications_weights_file_loads(tmp_path):
    keras.utils.set_random_seed(3)
    app = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.35
    )
    path = tmp_path / "mobilenet_v2_notop.h5"
    app.save_weights(tmp_path / "app.weights.h5")  # Keras 3 layout, checked below too
    from keras.src.legacy.saving import legacy_h5_format

    legacy_h5_format.save_weights_to_hdf5_group(_h5(path), app)
    keras.utils.set_random_seed(4)
    target = models.build("keras_app", (32, 32, 3), 4, **APP)
    report = pretrained.copy_weights(target, pretrained.read_weights(path))
    weighted = [layer.name for layer in pretrained.weighted_layers(app)]
    assert sorted(report.loaded) == sorted(weighted)
    assert report.new == ["keras_app_logits"]
    for name in ("Conv1", "bn_Conv1", "block_16_project"):
        assert all(
            np.array_equal(a, b)
            for a, b in zip(_weights(target, name), _weights(app, name), strict=True)
        )


def _h5(path):
    import h5py

    return h5py.File(path, "w")
