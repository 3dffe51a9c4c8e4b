"""The darknet reader: the bundled network definitions, the weights format, and clear failures."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from conversion import darknet, yolov3
from conversion import export as export_lib
from conversion import weights as weights_lib
from conversion.weights import WeightsError
from picmetric.cli import main
from tests.utils.yolov3 import write_crafted_tiny_weights

# Values in pjreddie's files: (248,007,048 - 20) / 4 and (35,434,956 - 20) / 4 bytes.
PUBLISHED_VALUE_COUNTS = {"yolov3.cfg": 62_001_757, "yolov3-tiny.cfg": 8_858_734}


@pytest.mark.parametrize("cfg", yolov3.CFGS)
def test_bundled_cfg_needs_exactly_the_published_weights(cfg: str) -> None:
    network = darknet.parse_cfg(yolov3.cfg_path(cfg))
    assert network.value_count == PUBLISHED_VALUE_COUNTS[cfg]
    assert network.classes == len(yolov3.class_names()) == 80
    assert yolov3.class_names()[0] == "person" and yolov3.class_names()[33] == "kite"


def test_yolov3_cfg_layers_and_anchors() -> None:
    network = darknet.parse_cfg(yolov3.cfg_path("yolov3.cfg"))
    assert len(network.layers) == 107 and len(network.convs) == 75
    assert [y.index for y in network.yolos] == [82, 94, 106]
    assert network.yolos[0].anchors == ((116, 90), (156, 198), (373, 326))
    assert network.yolos[2].anchors == ((10, 13), (16, 30), (33, 23))


def test_weights_round_trip_through_the_darknet_format(tmp_path: Path) -> None:
    network = darknet.parse_cfg(yolov3.cfg_path("yolov3-tiny.cfg"))
    path = tmp_path / "crafted.weights"
    write_crafted_tiny_weights(path)
    weights = darknet.read_weights(path, network)
    again = tmp_path / "again.weights"
    darknet.write_weights(again, network, weights)
    assert again.read_bytes() == path.read_bytes()
    assert weights[0].bn is not None and weights[-1].bn is None
    assert weights[0].kernel.shape == (16, 3, 3, 3)


def test_batch_norm_folds_as_darknet_computes_it() -> None:
    """darknet: gamma * (x - mean) / (sqrt(var) + 1e-6) + beta, after the convolution."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(2, 3, 1, 1)).astype(np.float32)
    gamma, mean, var, beta = (rng.uniform(0.5, 2, 2).astype(np.float32) for _ in range(4))
    x = rng.normal(size=3).astype(np.float32)
    folded_kernel, folded_bias = darknet.ConvWeights(beta, kernel, (gamma, mean, var)).folded()
    want = gamma * (kernel[:, :, 0, 0] @ x - mean) / (np.sqrt(var) + 1e-6) + beta
    np.testing.assert_allclose(x @ folded_kernel[0, 0] + folded_bias, want, rtol=1e-5)


@pytest.mark.parametrize("cut", [1, 1000])
def test_truncated_weights_fail_conversion_with_a_clear_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cut: int
) -> None:
    path = tmp_path / "yolov3-tiny.weights"
    write_crafted_tiny_weights(path)
    path.write_bytes(path.read_bytes()[:-cut])
    argv = [
        "convert",
        "yolov3",
        "--cfg",
        "yolov3-tiny.cfg",
        "--weights",
        str(path),
        "--repository",
        str(tmp_path / "repository"),
    ]
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    assert "truncated" in caplog.text and "35,434,956" in caplog.text
    assert not (tmp_path / "repository" / "yolov3_backbone" / "1" / "model.onnx").exists()


def test_weights_of_another_network_fail_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "yolov3-tiny.weights"
    write_crafted_tiny_weights(path)
    with pytest.raises(WeightsError, match=r"yolov3\.cfg needs exactly 248,007,048.*--cfg"):
        yolov3.convert(str(path), 0, tmp_path, cfg="yolov3.cfg")
    path.write_bytes(b"\0" * 7)
    with pytest.raises(WeightsError, match="not a darknet weights file"):
        yolov3.convert(str(path), 0, tmp_path, cfg="yolov3-tiny.cfg")


def test_unsupported_cfg_sections_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "odd.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\n\n[dropout]\nprobability=.5\n")
    with pytest.raises(darknet.DarknetError, match=r"\[dropout\] at line 5 is not supported"):
        darknet.parse_cfg(cfg)
    cfg.write_text("[net]\nwidth=32\n")
    with pytest.raises(darknet.DarknetError, match="needs 'height'"):
        darknet.parse_cfg(cfg)


def test_malformed_shortcut_and_anchors_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "odd.cfg"
    conv = "[convolutional]\nfilters=255\nsize=1\nactivation=linear\n\n"
    cfg.write_text(f"[net]\nwidth=32\nheight=32\n\n{conv}[shortcut]\nfrom=-3\n")
    with pytest.raises(darknet.DarknetError, match=r"\[shortcut\] at line 10: from=-3 is layer -2"):
        darknet.parse_cfg(cfg)
    cfg.write_text(f"[net]\nwidth=32\nheight=32\n\n{conv}[yolo]\nanchors=10,13,16\nclasses=80\n")
    with pytest.raises(darknet.DarknetError, match=r"line 10: anchors need width,height pairs"):
        darknet.parse_cfg(cfg)
    cfg.write_text(f"[net]\nwidth=32\nheight=32\n\n{conv}[yolo]\nanchors=10,13\nmask=0,1,2\n")
    with pytest.raises(darknet.DarknetError, match=r"mask \[0, 1, 2\] for 1 anchors"):
        darknet.parse_cfg(cfg)


@pytest.mark.parametrize("name", ["custom.cfg", "yolov3.cfg"])
def test_auto_weights_need_a_bundled_cfg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """A cfg of our own (even one named like a bundled one) has no published weights: `auto`
    fails before any download and says what to pass instead; a weights file still works."""
    cfg = tmp_path / name
    cfg.write_text(yolov3.cfg_path("yolov3-tiny.cfg").read_text())

    def no_download(*args: object, **kwargs: object) -> Path:
        raise AssertionError("auto must not download anything for a custom cfg")

    monkeypatch.setattr(weights_lib, "download", no_download)
    argv = ["convert", "yolov3", "--cfg", str(cfg), "--weights", "auto"]
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        main([*argv, "--repository", str(tmp_path / "repository")])
    assert exit_info.value.code == 1
    assert "--weights auto" in caplog.text and "--weights PATH or URL" in caplog.text
    assert "--weights random" in caplog.text
    weights = tmp_path / "tiny.weights"
    write_crafted_tiny_weights(weights)
    resolved = yolov3.resolve(str(weights), 0, str(cfg))
    assert resolved.kind == "file" and resolved.path == weights
    assert yolov3.resolve(str(weights), 0, "yolov3-tiny.cfg").kind == "file"  # not published


def test_missing_cfg_is_named(tmp_path: Path) -> None:
    with pytest.raises(darknet.DarknetError, match=r"nowhere\.cfg does not exist"):
        yolov3.resolve("random", 0, str(tmp_path / "nowhere.cfg"))


def test_conversion_cache_key_covers_every_file_of_the_darknet_package() -> None:
    """yolov3's cache key names the package `darknet`: a change in any of its files (the layer
    table included) must make a new conversion, not reuse a stale one."""
    files = {path.name for path in export_lib._source_files(darknet)}
    assert {"cfg.py", "layers.py", "weights_file.py", "keras_graph.py", "random_init.py"} <= files
