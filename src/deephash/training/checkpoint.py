"""Checkpoints that carry their configuration, so a model is rebuilt from the file alone.

A checkpoint holds plain data only: tensors, dicts, lists, tuples, numbers, strings and
``None``. :func:`save_checkpoint` converts numpy scalars and arrays and refuses anything
else, and every read goes through ``torch.load(..., weights_only=True)``, which builds no
other object. A file whose pickle would import code (``os.system``, a class) is refused
with a one-line :class:`ConfigError` before anything runs; so are missing, empty,
truncated, damaged and foreign files. Checkpoints written before this rule (a numpy
``val_map``) still load: numeric numpy scalars are the one allowance.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.backbones import RANDOM, create_backbone
from deephash.config import check_fields, from_dict, to_dict
from deephash.errors import ConfigError, DeephashError
from deephash.fileio import save_bytes
from deephash.safe_load import UnsafeFileError, safe_torch_load
from deephash.training.config import TrainConfig
from deephash.training.model import EmbeddingModel, build_model, partial_split

#: keys every deephash checkpoint has
REQUIRED_KEYS = ("config", "in_dim", "model")

#: what older checkpoints' numpy scalars need: numpy's scalar constructor and numeric
#: dtypes (rebuilding a number from a dtype and its bytes runs no code)
_NUMPY_SCALARS: list[Any] = [np.float64(0).__reduce__()[0], np.dtype,
                              *(type(np.dtype(t)) for t in (
                                  np.float64, np.float32, np.float16, np.int64, np.int32,
                                  np.int16, np.int8, np.uint8, np.bool_))]

_PLAIN_LEAVES = (type(None), bool, int, float, str, bytes, torch.Tensor, torch.dtype,
                 torch.device)


def to_plain(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with numpy scalars as Python numbers and numpy arrays as tensors, so that
    ``torch.load(weights_only=True)`` reads it back; raises :class:`TypeError` naming the
    first part that is not plain data (an object, a function, an object array)."""
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"{where} is a numpy object array; store numbers or strings")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, _PLAIN_LEAVES):
        return value
    if isinstance(value, dict):
        items = [(to_plain(k, f"a key of {where}"), to_plain(v, f"{where}[{k!r}]"))
                 for k, v in value.items()]
        if not isinstance(value, OrderedDict):
            return dict(items)
        out: OrderedDict[Any, Any] = OrderedDict(items)
        if hasattr(value, "_metadata"):  # a state dict's module versions
            out._metadata = value._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(value, (list, tuple)):
        parts = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return parts if isinstance(value, list) else tuple(parts)
    raise TypeError(f"{where} is a {type(value).__name__}, which a safe load cannot read; "
                    "store tensors, numbers, strings, lists and dicts")


def save_checkpoint(path: Path, config: TrainConfig, model: EmbeddingModel,
                    **extra: Any) -> None:
    """Atomically write ``{"config", "in_dim", "model", **extra}`` as plain data
    (:func:`to_plain`), so that :func:`read_checkpoint` reads every part back."""
    payload = {"config": to_dict(config), "in_dim": model.head.layers[0].in_features,
               "model": model.state_dict(), **extra}
    buffer = io.BytesIO()
    torch.save(to_plain(payload), buffer)
    save_bytes(path, buffer.getvalue())


def _refusal(path: Path, failure: UnsafeFileError) -> ConfigError:
    """The one-line error for a checkpoint that ``torch.load(weights_only=True)`` refused."""
    if failure.unsafe:
        return ConfigError(
            f"{path} is not a safe deephash checkpoint: {failure.reason}; deephash loads only "
            "tensors and plain data. Use a checkpoint written by deephash train or hash")
    return ConfigError(f"{path} is not a deephash checkpoint: {failure.reason}; the file is "
                       "truncated, damaged or of another kind. Use a best.pt or last.pt written "
                       "by deephash train or hash")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The plain-data payload of a checkpoint, read with ``weights_only=True``; raises a
    one-line :class:`ConfigError` for a missing, damaged, foreign or unsafe file."""
    path = Path(path)
    if not path.is_file():
        kind = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"checkpoint {path} {kind}; pass a trained run's best.pt")
    try:
        payload = safe_torch_load(path, allow=_NUMPY_SCALARS)
    except UnsafeFileError as failure:
        raise _refusal(path, failure) from None
    missing = ([k for k in REQUIRED_KEYS if k not in payload] if isinstance(payload, dict)
               else list(REQUIRED_KEYS))
    if missing:
        raise ConfigError(f"{path} is not a deephash checkpoint: it lacks {', '.join(missing)}; "
                          "use a best.pt or last.pt written by deephash train or hash")
    return dict(to_plain(payload))


def load_model(path: Path) -> tuple[TrainConfig, EmbeddingModel]:
    """Rebuild the configuration and the model (eval mode) from a checkpoint file."""
    payload = read_checkpoint(path)
    try:
        config = from_dict(TrainConfig, payload["config"])
        check_fields(config)  # a crafted image_size of 100000 or -5 stops here
        backbone = None
        if config.training.mode == "finetune":  # weights come from the checkpoint itself
            backbone = create_backbone(config.backbone.name, RANDOM)
        elif config.training.mode == "partial":  # the trained last blocks, ditto
            backbone = partial_split(config, RANDOM)[1]
        model = build_model(config.training, int(payload["in_dim"]), backbone)
        model.load_state_dict(payload["model"])
    except DeephashError as exc:
        raise ConfigError(f"checkpoint {path}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = " ".join(lines[:2]) or type(exc).__name__  # a header, then the first fault
        raise ConfigError(f"{path} is not a usable deephash checkpoint: its configuration "
                          f"and weights do not fit ({detail[:200]}); use the run's own "
                          "best.pt") from None
    return config, model.eval()
