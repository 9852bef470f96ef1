"""Refuse a bad configuration before any work: ``validate(config)``.

The command line calls it before the library function, and every library entry point
(``run_baseline``, ``run_train``, the studies, ``build_index``, ``search_image``) calls it
first, so nothing is written, extracted or cached for a configuration that would fail
later. It checks every field against its declared ``choices``, ``parse`` and bounds
(:func:`deephash.config.check_fields`), then what needs more than one field, in one
function per config kind: a margin > 0 where the loss or the miner uses one, a miner
whose tuples the loss trains on, regularisers and schedules that parse and name registered
components (``REGULARIZERS``, ``SCHEDULES``), ``--log`` backends whose packages are
installed, a data folder that exists, a device that is there, an extraction runtime that
is installed and computes in the asked precision. Errors
are :class:`~deephash.errors.ConfigError` (one line naming the option and the fix).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from functools import singledispatch
from pathlib import Path

from deephash.command_configs import (
    HashConfig,
    IndexConfig,
    LossStudyConfig,
    MethodStudyConfig,
    MinerStudyConfig,
    PackConfig,
    ReportConfig,
    ScheduleStudyConfig,
    SearchConfig,
    SelectMarginConfig,
)
from deephash.config import check_fields
from deephash.errors import ConfigError
from deephash.folders import check_index_out, is_run_folder
from deephash.pipeline.config import BackboneConfig, BaselineConfig
from deephash.registries import HASHING_METHODS, REGULARIZERS, parse_backbone
from deephash.training.config import TrainConfig, TrainingConfig


@singledispatch
def validate(config: object) -> None:
    """Raise ``ConfigError`` for the first problem of ``config``; return if it can run."""
    check_fields(config)


def _existing_folder(value: str | None, option: str, fix: str = "pass a folder") -> None:
    """``value`` names a folder, or a place where one can be created: neither it nor a
    folder above it is a file."""
    if value is None:
        return
    path = Path(value).expanduser()
    if path.is_file():
        raise ConfigError(f"{option} {path} is a file; {fix}")
    _creatable(path, option, fix)


def _creatable(path: Path, option: str, fix: str) -> None:
    """No file stands where a folder above ``path`` must be."""
    above = next((parent for parent in path.parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        raise ConfigError(f"{option} {path} is under {above}, which is a file; {fix}")


def _existing_file(value: str, option: str, fix: str) -> None:
    path = Path(value).expanduser()
    if path.is_dir():
        raise ConfigError(f"{option} {value} is a folder, not a file; {fix}")
    if not path.is_file():
        raise ConfigError(f"{option} {value}: no such file; {fix}")


def _check_cache(cache_dir: str | None, cache: bool) -> None:
    """``--cache-dir``, or the default cache it stands for (``$DEEPHASH_CACHE``,
    ``$HOME/.cache/deephash``), is a folder or can be created."""
    if cache_dir is not None or not cache:
        _existing_folder(cache_dir, "--cache-dir")
        return
    from deephash.data.fingerprint import default_cache_root

    option = ("$DEEPHASH_CACHE" if os.environ.get("DEEPHASH_CACHE") else
              "the default feature cache ($HOME/.cache/deephash)")
    _existing_folder(str(default_cache_root()), option,
                     "set DEEPHASH_CACHE (or HOME) to a folder, or pass --cache-dir or --no-cache")


def _check_device(name: str) -> None:
    from deephash.devices import resolve_device

    resolve_device(name)


def _check_runtime(runtime: str, precision: str) -> None:
    """An explicit ``--runtime`` must be installed and compute in ``--precision``; ``auto``
    always finds one (torch at worst)."""
    from deephash.runtimes.base import check_runtime

    if runtime != "auto":
        check_runtime(runtime, precision)


def _is_pack(path: Path) -> bool:
    from deephash.data.packed import is_pack

    return is_pack(path)


def _check_image_root(image_root: str | None) -> None:
    if image_root is not None and not Path(image_root).expanduser().is_dir():
        raise ConfigError(f"--image-root {image_root} is not a folder; pass the folder the "
                          "image paths of the list files or the CSV are relative to")


def _check_data(config: BaselineConfig) -> None:
    from deephash.data.open import DOWNLOADABLE

    data = config.data
    chosen = data.data_dir or os.environ.get("DEEPHASH_DATA")
    option = "--data-dir" if data.data_dir else "$DEEPHASH_DATA"
    if not chosen:
        if data.dataset not in DOWNLOADABLE:
            raise ConfigError("no data location: pass --data-dir DIR or set DEEPHASH_DATA "
                              "(or --format cifar10|mnist|fashion-mnist to download one)")
        return
    _check_image_root(data.image_root)
    path = Path(chosen).expanduser()
    if path.is_file() and not (_is_pack(path) or path.suffix.lower() == ".csv"):
        raise ConfigError(f"{option} {path} is a file; pass the folder that holds the data set "
                          "(or a .csv file, or a file written by deephash pack)")
    if not path.exists() and not (data.dataset in DOWNLOADABLE and data.download):
        raise ConfigError(f"{option} {path} does not exist; pass an existing folder"
                          + (" or allow --download" if data.dataset in DOWNLOADABLE else ""))


def _machine_memory() -> int:
    """This machine's physical memory in bytes (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _check_fits(need: int, what: str, fix: str) -> None:
    """Refuse sizes whose ``need`` bytes (a lower bound) exceed this machine's memory."""
    total = _machine_memory()
    if total and need > total:
        raise ConfigError(f"{what} needs at least {need / 2**30:,.0f} GiB; this machine has "
                          f"{total / 2**30:,.0f} GiB: {fix}")


def _check_sizes(config: BaselineConfig) -> None:
    """Sizes whose largest single allocation cannot fit in memory: one extraction batch of
    float32 input pixels; for training, the batch's ``B x B`` distance matrix (with its
    detached copy, mask and gradient) and, when fine-tuning, the batch's pixels (widths
    are bounded in the config metadata: ``MAX_WIDTH``)."""
    side, batch = config.backbone.image_size, config.extraction.batch_size
    _check_fits(batch * 3 * side * side * 4,
                f"one extraction batch of --batch-size {batch} images at --image-size {side}",
                "lower --image-size or --batch-size")
    training = getattr(config, "training", None)
    if not isinstance(training, TrainingConfig):
        return
    images = training.batch_classes * training.batch_samples
    _check_fits(4 * images * images * 4,
                f"a training batch of --batch-classes {training.batch_classes} x "
                f"--batch-samples {training.batch_samples} = {images} images (its distance "
                "matrix)", "lower --batch-samples or --batch-classes")
    if training.mode == "finetune":
        _check_fits(images * 3 * side * side * 4 * 2,
                    f"a fine-tuning batch of {images} images at --image-size {side}",
                    "lower --image-size, --batch-samples or --batch-classes")


def _check_backbone(backbone: BackboneConfig) -> None:
    """``timm:NAME`` names a model (and pretrained tag) that timm has."""
    model = parse_backbone(backbone.name)[1]
    if model is not None:
        from deephash.backbones.timm_models import check_timm_model

        check_timm_model(model)


def _check_partial(cfg: TrainingConfig, backbone: BackboneConfig) -> None:
    """``--mode partial`` on a timm backbone: its architecture splits into blocks, at least
    ``--trainable-blocks`` of them (read from the architecture, random weights; the
    built-in backbones all split, see :mod:`deephash.backbones.split`)."""
    if cfg.mode != "partial" or parse_backbone(backbone.name)[1] is None:
        return
    from deephash.backbones import RANDOM, create_backbone
    from deephash.backbones.split import check_trainable_blocks

    check_trainable_blocks(create_backbone(backbone.name, RANDOM), cfg.trainable_blocks)


def _check_baseline(config: BaselineConfig) -> None:
    check_fields(config)
    _check_backbone(config.backbone)
    _check_sizes(config)
    _existing_folder(config.out, "--out")
    _check_cache(config.extraction.cache_dir, config.extraction.cache)
    weights = config.backbone.weights
    if weights not in ("default", "none"):
        _existing_file(weights, "--weights", "use default (ImageNet), none (random) or a "
                                             "state-dict file")
    _check_data(config)
    _check_device(config.extraction.device)
    _check_runtime(config.extraction.runtime, config.extraction.precision)


def _check_scheduled(texts: Iterable[str], option: str) -> None:
    """Each ``NAME=KIND:START[:END[:EVERY]]`` parses (a kind of ``SCHEDULES``) and names
    what training can schedule: the margin or a regulariser of ``REGULARIZERS``."""
    from deephash.training.schedules import parse_schedule

    names: set[str] = set()
    for text in texts:
        name = parse_schedule(text)[0]
        if name != "margin" and name not in REGULARIZERS:
            raise ConfigError(f"{option} {text}: nothing named {name!r} to schedule; name "
                              f"margin or a regulariser ({', '.join(REGULARIZERS)})")
        if name in names:
            raise ConfigError(f"{option} schedules {name!r} twice; give one schedule per name")
        names.add(name)


def _check_training(cfg: TrainingConfig, seed: int) -> None:
    """The loss and its options, the miner, their margin and compatibility, regularisers
    and schedules."""
    from deephash.losses import create_loss
    from deephash.miners import create_miner
    from deephash.pipeline.setup import parse_weights
    from deephash.training.loggers import check_loggers
    from deephash.training.schedules import parse_schedule

    loss = create_loss(cfg.loss, cfg.margin, cfg.distance, cfg.reduction, num_classes=2,
                       embedding_dim=1, options=cfg.loss_options)
    miner = create_miner(cfg.miner, cfg.margin, seed)
    _check_scheduled(cfg.schedules, "--schedules")
    scheduled = {parse_schedule(text)[0] for text in cfg.schedules}
    users = ([f"the {cfg.loss} loss"] if loss.uses_margin else []) + (
        [f"the {cfg.miner} miner"] if loss.uses_miner and miner.uses_margin else [])
    if users and "margin" not in scheduled and cfg.margin <= 0:
        raise ConfigError(f"--margin must be greater than 0 for {' and '.join(users)}, got "
                          f"{cfg.margin:g}")
    loss.check_miner(miner)
    if loss.activations and cfg.activation not in loss.activations:
        raise ConfigError(f"the {cfg.loss} loss trains {' or '.join(loss.activations)} codes, "
                          f"not {cfg.activation}; use --activation {loss.activations[0]} "
                          f"(deephash hash --method {cfg.loss} sets it)")
    parse_weights(cfg.regularizers)
    if cfg.mode != "partial" and cfg.trainable_blocks != TrainingConfig.trainable_blocks:
        raise ConfigError(f"--trainable-blocks {cfg.trainable_blocks} applies to --mode "
                          f"partial (not {cfg.mode})")
    _check_shallow(cfg)
    check_loggers(cfg.log, cfg.mlflow_uri)
    if cfg.views and cfg.mode == "finetune":
        raise ConfigError(f"--views {cfg.views} caches augmented views for frozen training; "
                          "--mode finetune augments images online: drop --views")


def _check_shallow(cfg: TrainingConfig) -> None:
    """A procedure that fits a linear coder (ITQ, LSH) fits it on frozen features and
    gives binary codes."""
    from deephash.hashing.shallow import shallow_coder

    if shallow_coder(cfg.procedure) is None:
        return
    if cfg.mode != "frozen":
        raise ConfigError(f"--procedure {cfg.procedure} is fitted on the frozen features: "
                          f"drop --mode {cfg.mode}")
    if not cfg.codes:
        raise ConfigError(f"--procedure {cfg.procedure} gives binary codes: add --codes (or "
                          f"run deephash hash --method {cfg.procedure})")


def _check_coder_fits(cfg: TrainingConfig, backbone: BackboneConfig) -> None:
    """A shallow coder's code length against the backbone's feature dimension (ITQ's PCA
    keeps at most that many), read from the architecture without loading its weights."""
    from deephash.backbones import create_backbone
    from deephash.hashing.shallow import shallow_coder

    coder = shallow_coder(cfg.procedure)
    if coder is not None and coder.uses_pca:
        coder.check(cfg.embedding_dim, create_backbone(backbone.name, "none").num_features)


@validate.register
def _(config: BaselineConfig) -> None:
    _check_baseline(config)


@validate.register
def _(config: TrainConfig) -> None:
    _check_baseline(config)
    _check_training(config.training, config.seed)
    _check_coder_fits(config.training, config.backbone)
    _check_partial(config.training, config.backbone)


@validate.register
def _(config: SelectMarginConfig) -> None:
    from deephash.losses import loss_traits

    _check_baseline(config)
    if not loss_traits(config.training.loss).uses_margin:
        raise ConfigError(f"loss {config.training.loss!r} has no margin to select; use "
                          "deephash train")
    if not config.margins:
        raise ConfigError("--margins needs at least one value")
    for margin in config.margins:
        _check_training(dataclasses.replace(config.training, margin=margin), config.seed)


@validate.register
def _(config: LossStudyConfig) -> None:
    from deephash.losses import loss_traits

    _check_baseline(config)
    if not config.losses:
        raise ConfigError("--losses needs at least one LOSS or LOSS+MINER")
    for entry in config.losses:
        training = config.entry_training(entry)
        margins: tuple[float, ...] = (training.margin,)
        if loss_traits(training.loss).uses_margin:
            margins = config.margin_grid(training.loss)
            if not margins:
                raise ConfigError(f"--losses {entry}: its margin grid is empty; give margins")
        for margin in margins:
            _check_training(dataclasses.replace(training, margin=margin), config.seed)


@validate.register
def _(config: MinerStudyConfig) -> None:
    from deephash.losses import miners_for

    _check_baseline(config)
    for miner in config.miners or miners_for(config.training.loss):
        _check_training(dataclasses.replace(config.training, miner=miner), config.seed)


@validate.register
def _(config: HashConfig) -> None:
    _check_baseline(config)
    if not config.hashing.bits:
        raise ConfigError("--bits needs at least one code length")
    for bits in config.hashing.bits:
        training = dataclasses.replace(config.training, embedding_dim=bits, codes=True)
        method = HASHING_METHODS.create(config.hashing.method, training)
        _check_training(method, config.seed)
        _check_coder_fits(method, config.backbone)
    _check_partial(config.training, config.backbone)


@validate.register
def _(config: MethodStudyConfig) -> None:
    from deephash.training.methods import METHOD_GRIDS, classifier_training

    _check_baseline(config)
    if not config.methods or not config.bits or not config.seeds:
        raise ConfigError("give at least one --methods, one --bits and one --seeds")
    for method in config.methods:
        grid = METHOD_GRIDS.get(method)
        for settings in [grid.settings(value) for value in grid.values] if grid else [{}]:
            training = dataclasses.replace(config.training, **settings)
            for bits in sorted({*config.bits, config.selection_bits}):
                created = HASHING_METHODS.create(method, dataclasses.replace(
                    training, embedding_dim=bits, codes=True))
                _check_training(created, config.seed)
                _check_coder_fits(created, config.backbone)
    if config.classifier_codes:
        _check_training(classifier_training(config.training), config.seed)


@validate.register
def _(config: ScheduleStudyConfig) -> None:
    from deephash.training.schedules import parse_variant

    validate.dispatch(HashConfig)(config)
    if len(config.hashing.bits) != 1:
        raise ConfigError("the schedule study compares one code length; give one --bits")
    if not config.variants or not config.seeds:
        raise ConfigError("give at least one --variants and one --seeds")
    for variant in config.variants:
        _check_scheduled(parse_variant(variant), "--variants")


@validate.register
def _(config: IndexConfig) -> None:
    check_fields(config)
    if config.add is not None:
        _check_add(config)
        return
    if not config.checkpoint:
        raise ConfigError("--checkpoint is required (a trained run's best.pt)")
    _existing_file(config.checkpoint, "--checkpoint", "pass a trained run's best.pt")
    data = None if config.data_dir is None else Path(config.data_dir).expanduser()
    if data is not None and not data.is_dir() and not (
            _is_pack(data) or (data.is_file() and data.suffix.lower() == ".csv")):
        raise ConfigError(f"--data-dir {config.data_dir} is not a folder; pass the images' "
                          "folder (or a .csv file, or a file written by deephash pack)")
    _check_image_root(config.image_root)
    _existing_folder(config.out, "--out")
    _check_cache(config.cache_dir, config.cache)
    _check_device(config.device)
    check_index_out(config)  # a non-empty --out: --overwrite, and only an index folder


def _check_add(config: IndexConfig) -> None:
    """``index --add DIR --out INDEX``: DIR a folder, INDEX an index folder."""
    if config.overwrite or config.data_dir is not None:
        raise ConfigError("--add DIR adds DIR's images to the index in --out; drop "
                          "--overwrite and --data-dir")
    if not Path(config.add or "").expanduser().is_dir():
        raise ConfigError(f"--add {config.add} is not a folder; pass a folder of images")
    if not (Path(config.out).expanduser() / "index.json").is_file():
        raise ConfigError(f"--out {config.out} holds no index to add to; build one with "
                          "deephash index --data-dir DIR --out FOLDER first")
    if config.checkpoint:
        _existing_file(config.checkpoint, "--checkpoint", "pass the run's best.pt")
    _check_image_root(config.image_root)
    _check_cache(config.cache_dir, config.cache)
    _check_device(config.device)


@validate.register
def _(config: SearchConfig) -> None:
    check_fields(config)
    if not config.image:
        raise ConfigError("give a query image: deephash search IMAGE --index FOLDER")
    _existing_file(config.image, "query image", "pass an image file")
    if config.checkpoint:
        _existing_file(config.checkpoint, "--checkpoint", "pass the run's best.pt")
    if not (Path(config.index) / "index.json").is_file():
        raise ConfigError(f"--index {config.index} is not an index folder (run deephash index)")
    if config.show is not None:
        _check_picture(config.show, "--show")


#: the picture files ``search --show`` writes (matplotlib's formats of images)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def _check_picture(value: str, option: str) -> None:
    """A picture file to write: not a folder, named by its format, creatable."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise ConfigError(f"{option} {value} is a folder; name the picture file, e.g. "
                          f"{path / 'results.png'}")
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        raise ConfigError(f"{option} {value}: not a picture file name; end it in "
                          f"{', '.join(PICTURE_SUFFIXES)}")
    _creatable(path, option, "choose a path under a folder")


@validate.register
def _(config: PackConfig) -> None:
    check_fields(config)
    if not config.data_dir or not config.file:
        raise ConfigError("give the data set and the file to write: deephash pack DATA_DIR FILE")
    if not Path(config.data_dir).expanduser().exists():
        raise ConfigError(f"DATA_DIR {config.data_dir} does not exist; pass a data set folder "
                          "(or a pack)")
    _check_image_root(config.image_root)
    target = Path(config.file).expanduser()
    if target.is_dir():
        raise ConfigError(f"FILE {target} is a folder; name the pack file, e.g. "
                          f"{target / 'data.pack'}")
    if target.exists() and not config.overwrite:
        raise ConfigError(f"FILE {target} exists; replace it with --overwrite or choose "
                          "another FILE")
    if target.exists() and not _is_pack(target):
        raise ConfigError(f"--overwrite: FILE {target} is not a deephash pack; refusing to "
                          "replace it, choose another FILE")


#: what marks a folder ``deephash report`` may write into again: an earlier report, or a
#: study's folder (``deephash study`` reports into it)
_REPORT_HOMES = ("report.html", "study.yaml")


@validate.register
def _(config: ReportConfig) -> None:
    check_fields(config)
    out = Path(config.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a folder for the report")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if is_run_folder(out):
        raise ConfigError(f"--out {out} is a run folder; the report would write into the run: "
                          "choose another --out (e.g. a new folder beside the runs)")
    if not any((out / name).is_file() for name in _REPORT_HOMES):
        raise ConfigError(f"--out {out} holds other files (no earlier report); choose a new "
                          "or empty folder for the report")
