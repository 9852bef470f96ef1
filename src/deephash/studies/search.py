"""``deephash index`` and ``deephash search``: a searchable collection of images.

An index folder holds ``index.npz`` (the retrieval index: packed codes of a hashing
model, or float embeddings), ``items.npz`` (per row: the image's path and labels, and the
class names: :mod:`deephash.service.items`), for a hashing model ``outputs.npz`` (its
continuous outputs, which order the results tied in Hamming distance:
:mod:`deephash.index.rerank`), plus ``index.json`` naming the checkpoint that produced it
and the SHA-256 of those files (checked before they are read). ``search`` embeds a query
image with that checkpoint and prints the k nearest images with their labels
(comma-separated names; an index of unlabelled images prints no label column; a ``-k``
beyond the index's size prints them all, with a note) and how many items tie with the
k-th, or with ``--json`` the same as one JSON object (:func:`json_answer`). It can also
save a picture of the query beside its first results (at most :data:`SHOW_MAX`), framed
green where a result shares a label with the query (``--label``, else the query's folder
name where that is a class), red where it shares none. Any data set can be indexed,
labelled or not (an unlabelled folder: one note line says that nothing is marked).

Index folders are relocatable. ``index.json`` records the checkpoint and, for an image
folder, the data root *relative to the index folder* (``"../run/best.pt"``), with the
absolute paths at indexing time as a fallback; ``items.npz`` holds image paths relative
to the data root. Moving the index folder together with the run and the data (one tree
moved or copied) keeps everything found; moving the index folder alone still finds them
at their old absolute places. A checkpoint found at neither place is named in the error,
and ``search --checkpoint`` points at it. Index folders written before relative paths
(absolute paths only) are read as they are.

``search`` runs the search path of the service (:class:`deephash.service.searcher.Searcher`,
which ``deephash serve`` keeps loaded), so the two answer a query image alike: same
decoder, same transform, same forward pass, same index search.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deephash.data import open_dataset
from deephash.data.dataset import ImageDataset
from deephash.data.fingerprint import memo_location
from deephash.devices import resolve_device
from deephash.distributed import init_from_environment, ranks
from deephash.errors import ConfigError, DataError
from deephash.features import compute_views, transform_spec
from deephash.index import (
    RecallSample,
    RetrievalIndex,
    create_index,
    is_binary,
    recall_at_k,
    recall_by_nprobe,
    recall_sample,
)
from deephash.index.approximate import ivf_lists
from deephash.labels import LabelSet
from deephash.pipeline.cache import cache_location
from deephash.registries import parse_rerank
from deephash.service.downscale import decode_query
from deephash.service.embedder import (
    feature_backbone,
    outputs_of_features,
    vectors_of_outputs,
    views_of,
)
from deephash.service.folder import read_info, relative
from deephash.service.items import Items
from deephash.service.outputs import save_outputs
from deephash.service.searcher import Searcher
from deephash.studies.configs import IndexConfig, SearchConfig
from deephash.studies.index_folder import write_index
from deephash.training.checkpoint import load_model
from deephash.validation import validate

log = logging.getLogger(__name__)

#: the most results ``--show`` draws (one 160-pixel panel each)
SHOW_MAX = 50
#: the recall at which ``index``'s nprobe ladder stops
LADDER_TOP = 0.999

__all__ = ["IndexConfig", "SearchConfig", "build_index", "feature_backbone", "search_image"]


def build_index(config: IndexConfig, dataset: ImageDataset | None = None) -> dict[str, Any]:
    """Embed every image of ``data_dir`` (or of ``dataset``, already opened) with the
    checkpoint and index the results into ``out`` (:mod:`deephash.studies.index_folder`:
    when it may be replaced, and how it is written atomically). Under torchrun the ranks
    share the extraction (:mod:`deephash.features.cache`) and rank 0 alone builds and
    writes the index (the other ranks return ``{}``)."""
    validate(config)  # --checkpoint given and a file; --out may receive an index
    if config.add is not None:  # one append segment to the index in --out
        from deephash.studies.index_add import add_folder

        return add_folder(config)
    device = init_from_environment(resolve_device(config.device))  # torchrun: share extraction
    train_config, model = load_model(Path(config.checkpoint))
    if train_config.training.mode == "finetune":
        raise ConfigError("indexing supports frozen and partial models (cached features or "
                          "activations), not --mode finetune")
    cache = cache_location(config)
    if dataset is None:
        dataset = open_dataset(config.data_dir, config.dataset, download=False,
                               fingerprint_memo=memo_location(cache),
                               image_root=config.image_root)
    if not dataset.labels.labelled.any():
        log.info("note: %s has no labels; search ranks its images by similarity alone, "
                 "with no relevance marks and no metrics", dataset.name)
    codes = train_config.training.codes
    index = new_index(config, codes, train_config.training.embedding_dim,
                      "cosine" if train_config.evaluation.distance == "cosine" else "l2")
    backbone = feature_backbone(train_config)
    spec = transform_spec(backbone, train_config.backbone.image_size)
    views = compute_views(dataset, backbone, spec, views_of(train_config), cache_dir=cache,
                          runtime="auto", precision=train_config.extraction.precision,
                          device=device)
    if not ranks().main:  # torchrun: the others shared the extraction; rank 0 indexes
        return {}
    features = [views[view] for view in views_of(train_config)]
    outputs = outputs_of_features(model, features)
    vectors = vectors_of_outputs(outputs, codes)
    dim = train_config.training.embedding_dim
    index.add(vectors, ids=np.arange(len(dataset)))
    quality = measured_recall(index, vectors, config.recall_queries)
    out = Path(config.out).expanduser()
    paths, places = _item_paths(dataset, out, config.data_dir)
    items = Items(paths, dataset.labels, tuple(dataset.classes), np.zeros(len(paths), dtype=bool))
    checkpoint = Path(config.checkpoint).resolve()
    info = {"checkpoint": relative(checkpoint, out), "checkpoint_absolute": str(checkpoint),
            **places, "index": index.factory, "codes": codes, "dim": dim,
            "n_items": len(dataset), "data": dataset.name, "spec": spec.describe(),
            **({} if codes else {"metric": getattr(index, "metric", "l2")}),
            **({"search_settings": index.settings} if index.settings else {}), **quality}
    parts: dict[str, Callable[[Path], None]] = {"index": index.save, "items": items.save}
    if codes:  # what Hamming ties are ordered by (deephash.index.rerank)
        parts["outputs"] = lambda path: save_outputs(path, outputs)
    info = write_index(out, info, parts)
    log.info("indexed %d images into %s (%s)", len(dataset), out, index.factory)
    return info


def new_index(config: IndexConfig, codes: bool, dim: int, metric: str) -> RetrievalIndex:
    """The empty index ``--index`` names for a model's vectors (``codes``: packed bits,
    else ``dim``-d embeddings compared by ``metric``), its settings applied: every mistake
    (a binary index for embeddings, a PQ that does not divide ``dim``, ``--nprobe`` for an
    index without lists) is one line before anything is extracted."""
    factory = config.index if config.index != "auto" else "BFlat" if codes else "Flat"
    if codes != is_binary(factory):
        fits = ("BFlat, BHNSW<M>, BMIH<h> or BIVF<nlist>" if codes
                else "Flat or a faiss factory string (IVF1024,Flat, HNSW32, ...)")
        raise ConfigError(f"index {factory} does not fit a "
                          f"{'hashing' if codes else 'float embedding'} model; use {fits}")
    index = create_index(factory, dim, metric, config.train_sample)
    index.configure(nprobe=config.nprobe, efSearch=config.ef_search)
    return index


def measured_recall(index: RetrievalIndex, vectors: np.ndarray,
                    queries: int) -> dict[str, Any]:
    """An approximate index's recall@10 against exact search on ``queries`` sampled items
    (:func:`deephash.index.recall_at_k`), logged in one line, as ``index.json`` keeps it;
    ``{}`` for an exact index or ``queries`` 0."""
    if not index.approximate or queries == 0:
        return {}
    sample = recall_sample(index, vectors, k=10, n_queries=queries)  # one exact search
    recall = recall_at_k(index, vectors, sample=sample)
    exact = "BFlat" if is_binary(index.factory) else "Flat"
    settings = ", ".join(f"{name} {value}" for name, value in index.settings.items())
    log.info("recall@%d of %s%s against exact %s: %.4f (%d sampled items as queries)",
             recall.k, index.factory, f" ({settings})" if settings else "", exact, recall.value,
             recall.queries)
    found = {"k": recall.k, "value": recall.value, "queries": recall.queries,
             "against": exact, "settings": index.settings}
    nlist = ivf_lists(getattr(index, "index", None))
    if nlist:  # what another nprobe would give: the user's choice, read off this ladder
        found["by_nprobe"] = nprobe_ladder(index, vectors, sample, nlist)
    return {"recall": found}


def nprobe_ladder(index: RetrievalIndex, vectors: np.ndarray, sample: RecallSample,
                  nlist: int) -> list[dict[str, Any]]:
    """An IVF's recall@10 on ``sample`` and batched search time per query at ``nprobe`` 1,
    2, 4, ..., ``nlist``, up to the first reaching :data:`LADDER_TOP` recall, logged in one
    line."""
    values = [1 << i for i in range(nlist.bit_length()) if 1 << i < nlist] + [nlist]
    steps = [{"nprobe": nprobe, "value": recall.value, "ms_per_query": round(ms, 3)}
             for nprobe, recall, ms in recall_by_nprobe(index, vectors, values,
                                                        enough=LADDER_TOP, sample=sample)]
    log.info("recall@10 by nprobe (ms per query, batched): %s; serve or search with "
             "--nprobe N to choose another", ", ".join(
                 f"{s['nprobe']}: {s['value']:.4f} ({s['ms_per_query']:.2f} ms)" for s in steps))
    return steps


def _item_paths(dataset: ImageDataset, out: Path,
                data_dir: str | None) -> tuple[np.ndarray, dict[str, str]]:
    """Per row, the image's path relative to the data root, and the data root (relative
    to the index folder, and absolute) for ``index.json``, where every image is a file
    under the data set's folder (an image folder, an unlabelled folder); other data sets
    keep their own description of each row (``cifar10:test[17]``, a pack's rows), and
    ``index.json`` records the ``--data-dir`` they were opened from (the service's
    thumbnails read their rows there)."""
    files = image_files(dataset)
    if files is None:
        where = ({} if data_dir is None else
                 {"data_dir": relative(Path(data_dir), out),
                  "data_dir_absolute": str(Path(data_dir).resolve())})
        return np.array([dataset.describe(i) for i in range(len(dataset))]), where
    root, paths = files
    return np.array(paths), {"data_root": relative(root, out), "data_root_absolute": str(root)}


def image_files(dataset: ImageDataset) -> tuple[Path, list[str]] | None:
    """The data set's folder (resolved) and each image's file relative to it (POSIX), when
    every image is a file inside that folder; else ``None``."""
    folder = dataset.data_files()[0]
    paths = []
    for index in range(len(dataset)):
        source = dataset.image_source(index)
        if not isinstance(source, Path) or not source.is_relative_to(folder):
            return None
        relative_path = source.relative_to(folder)
        if ".." in relative_path.parts:
            return None
        paths.append(relative_path.as_posix())
    return Path(folder).resolve(), paths


def search_image(config: SearchConfig) -> list[dict[str, Any]]:
    """Print (and return) the k nearest indexed images to ``config.image``."""
    validate(config)
    if not config.image:
        raise ConfigError("give a query image: deephash search IMAGE --index FOLDER")
    read_info(Path(config.index))  # not an index folder: say so before reading anything
    try:
        data = Path(config.image).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read image {config.image}: {exc.strerror}") from None
    # the checkpoint is checked before anything index.json says is used (a crafted one)
    searcher = Searcher.open(Path(config.index), config.checkpoint,
                             rerank=parse_rerank(config.rerank),
                             settings={"nprobe": config.nprobe, "efSearch": config.ef_search})
    # decoded as the service decodes an upload (a large image no larger than the model needs)
    query = decode_query(data, config.image, searcher.embedder.image_size, "pass an image file")
    items = searcher.state.items
    labels = query_labels(items, config.label, Path(config.image).parent.name)
    k = max(1, min(config.k, searcher.state.size))
    if k < config.k:
        log.info("-k %d: the index holds %d images; showing them all", config.k, k)
    answer = searcher.answer_images([query], k, labels=labels)[0]
    rows = [{"rank": rank, "item": hit["id"], "distance": hit["distance"],
             "label": ",".join(hit["labels"]) or "-", "labels": hit["labels"],
             "path": searcher.full_path(hit), "relevant": hit["shares_label"]}
            for rank, hit in enumerate(answer.hits, start=1)]
    if config.json:
        print(json.dumps(json_answer(config.image, config.index, k, rows, answer.ties),
                         indent=2))
    else:
        print_table(rows, answer.ties, k, labelled=bool(items.labels.labelled.any()))
    if config.show:
        from deephash.viz.search import plot_results

        if len(rows) > SHOW_MAX:
            log.info("--show: the picture shows the first %d of %d results", SHOW_MAX, len(rows))
        title = None if labels is None else ",".join(items.label_name(i) for i in labels.lists()[0])
        plot_results(query, rows[:SHOW_MAX], title, Path(config.show).expanduser())
    return rows


def print_table(rows: list[dict[str, Any]], ties: dict[str, Any] | None, k: int,
                labelled: bool) -> None:
    """``search``'s text output: rank, distance, label (none for an unlabelled index) and
    path per result, then for codes the line on the ties at the k-th distance."""
    print(f"{'rank':>4}  {'distance':>8}  {'label':<12}  path" if labelled
          else f"{'rank':>4}  {'distance':>8}  path")
    for row in rows:
        print(f"{row['rank']:>4}  {row['distance']:>8.3g}  {row['label']:<12}  {row['path']}"
              if labelled else f"{row['rank']:>4}  {row['distance']:>8.3g}  {row['path']}")
    if ties is not None:
        print(ties_line(ties, k))


def json_answer(image: str, index: str, k: int, rows: list[dict[str, Any]],
                ties: dict[str, Any] | None) -> dict[str, Any]:
    """``search --json``: the query image, the index folder, k, each hit (rank, its item
    id in the index, path, labels, distance, and ``relevant``: whether it shares a label
    with the query, ``null`` where unknown) and for codes the ties at the k-th distance
    (``{"distance", "count", "shown", "order"}``; ``null`` for float embeddings)."""
    keys = ("rank", "item", "path", "labels", "distance", "relevant")
    return {"query": image, "index": index, "k": k,
            "hits": [{key: row[key] for key in keys} for row in rows],
            "ties": ties}


def query_labels(items: Items, given: str | None, folder: str) -> LabelSet | None:
    """The query's label set: the classes ``given`` names (``--label``: one class name, or
    several separated by commas), else the class its ``folder`` is named after; ``None``
    when none of them is a class of the index (nothing is marked)."""
    if not given:
        names = [folder]
    else:
        names = [given] if given in items.classes else [n.strip() for n in given.split(",")]
    ids = [items.classes.index(name) for name in names if name in items.classes]
    return LabelSet.from_lists([ids], items.labels.n_classes) if ids else None


def ties_line(ties: dict[str, Any], k: int) -> str:
    """The line under ``search``'s table: how many items tie with the k-th result."""
    if ties["count"] <= ties["shown"]:
        return (f"# all {ties['count']} items at Hamming distance {ties['distance']} (that of "
                f"result {k}) are shown")
    chosen = ("the model's continuous outputs" if ties["order"] == "continuous outputs"
              else "a seeded random order")
    return (f"# {ties['count']} items share Hamming distance {ties['distance']} with result "
            f"{k}; {ties['shown']} of them shown, chosen by {chosen}")
