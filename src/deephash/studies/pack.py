"""``deephash pack DATA_DIR FILE``: a data set as one file (:mod:`deephash.data.packed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deephash.data.open import open_dataset
from deephash.data.packed import write_pack
from deephash.progress import progress_bar
from deephash.studies.configs import PackConfig
from deephash.validation import validate


def run_pack(config: PackConfig) -> dict[str, Any]:
    """Write the data set at ``config.data_dir`` into the pack ``config.file`` and print one
    line: images, classes, bytes and path. Returns the same figures."""
    validate(config)
    dataset = open_dataset(config.data_dir, config.dataset, download=False,
                           image_root=config.image_root)
    path = Path(config.file).expanduser()
    bar = progress_bar(len(dataset), f"pack {path.name}", unit="img")
    try:
        size = write_pack(dataset, path, on_image=bar.update)
    finally:
        bar.close()
    summary = {"images": len(dataset), "classes": len(dataset.classes), "bytes": size,
               "path": str(path)}
    print(f"packed {len(dataset)} images of {len(dataset.classes)} classes into {path} "
          f"({size} bytes)")
    return summary
