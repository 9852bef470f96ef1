"""Index and serve at scale: 1M and 10M 48-bit codes, 1M 256-d float embeddings.

Collections (``--collections``, each ``KIND-SOURCE-SIZE``):

* ``codes-synthetic-<n>``: 48-bit codes with a cluster structure: ``n / 1000`` random centre
  codes, each item its centre with every bit flipped with probability 0.08 (about 4 bits
  from its centre, 24 from another centre's items); the continuous outputs agree with the
  bits (sign) with magnitudes uniform in [0.3, 1]; the label is the cluster modulo 100.
* ``codes-cifar10-<n>``: the real CIFAR-10 database codes and continuous outputs of a hashing
  run (``--cifar-codes``: a run's ``bits-48/codes/database.npz``, 50,000 codes), replicated
  ``n / 50,000`` times (every code and its outputs repeated: the ties grow with ``n``).
* ``floats-synthetic-<n>``: 256-d float32 embeddings, ``n / 1000`` Gaussian centres
  (N(0, 1)) and each item its centre plus N(0, 1) noise (an item is as far from its
  cluster's other items as two centres are from each other), squared L2.

For each collection and index (``BFlat`` and ``BIVF<nlist>`` for codes; ``Flat``,
``IVF<nlist>,Flat`` and optionally ``HNSW32`` for floats) an index folder is written with
deephash's own writer (:func:`deephash.studies.index_folder.write_index`, the model being a
tiny hashing or embedding run made here, at 32 px, so that ``serve`` can load it), then:

1. **build**: the index's train + add time and the folder's write time (with checksums);
   for an IVF, the **nprobe sweep** (``--sweep``), in this process on one thread: recall@10
   and the median time of one query at each ``nprobe`` on 200 item queries, codes ranked as
   served; the folder is saved with ``--bivf-nprobe`` / ``--ivf-nprobe``, by default
   (``auto``) the smallest swept ``nprobe`` reaching recall@10 0.95, as a user would choose
   it from the sweep (the served recall below is measured on other queries);
2. **serve**: ``deephash serve`` started as a subprocess (start-up time, resident memory
   after loading: ``VmRSS``), then search by item id (``GET /items/ID/search?k=10``, random
   seeded ids): one client (``--sequential`` requests) and 8 concurrent clients
   (``--concurrent`` requests): p50 / p99 latency;
3. **recall@10 as served** for the approximate indexes, on ``--recall-queries`` item
   queries: a hit counts when its true distance is at most the exact 10th nearest's (the
   tie-aware rule of :mod:`deephash.index.recall`), the exact one computed here by a full
   scan;
4. **appends** (``--appends``: the sizes of the codes collections measured; on their
   ``BFlat`` folders only): in this process, ``add_images`` of a 1,000-item segment to the
   loaded folder (segment written, index and arrays grown; no
   model), repeated; then through ``serve``, ``POST /items`` of 1,000 PNGs (embedded by the
   tiny model) while 8 clients search, and the search latency meanwhile.

``--appends-only`` measures step 4's in-process appends alone, on each codes collection's
``BFlat`` folder: loaded as it is and loaded with spare room made (as ``serve`` loads it,
:func:`deephash.service.state.with_spare_room`), alternating over ``--append-rounds``, the
part of each add spent in memory timed apart from the writes (results: ``scale-appends.json``,
table ``first_appends``).

Goals (issue 24, this 2-core CPU): 10M codes p50 < 50 ms exact and < 5 ms approximate with
recall@10 >= 0.95; 1M floats p50 < 5 ms approximate with recall@10 >= 0.95; an append of
1,000 items < 1 s at 10M. Results: ``benchmarks/results/scale.json``, with the README's
and docs/scale.md's tables (``scale``, ``appends``, ``sweeps``; ``--retable`` rewrites them
from the measurements alone); the folders go to ``--work`` (about 2.5 GB per 10M-code
folder; removed unless ``--keep``).

    ./run python benchmarks/bench_scale.py --cifar-codes RUN/bits-48/codes/database.npz
          [--collections codes-synthetic-1M,...] [--work /tmp/deephash-scale]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_service import Client, multipart, requests_of, run_clients, server
from common import rss_mb, write_result
from PIL import Image

from deephash.cli import main as cli
from deephash.index import create_index
from deephash.index.rerank import CodeRanker
from deephash.labels import LabelSet
from deephash.service.folder import relative
from deephash.service.items import Items
from deephash.service.outputs import save_outputs
from deephash.studies.index_folder import write_index

BITS, FLOAT_DIM, K = 48, 256, 10
GOALS = {"codes_10M_exact_p50_ms": 50.0, "codes_10M_approximate_p50_ms": 5.0,
         "floats_1M_approximate_p50_ms": 5.0, "recall_at_10": 0.95, "append_1000_at_10M_s": 1.0}
SIZES = {"20K": 20_000, "100K": 100_000, "1M": 1_000_000, "10M": 10_000_000}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- collections ---------------------------------------------------------------------------


def synthetic_codes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n, 6)`` packed codes, ``(n, 48)`` float16 outputs, ``(n,)`` labels (docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (max(1, n // 1000), BITS), dtype=np.uint8)
    cluster = rng.integers(0, len(centres), n)
    codes = np.empty((n, BITS // 8), dtype=np.uint8)
    outputs = np.empty((n, BITS), dtype=np.float16)
    for start in range(0, n, 1 << 20):
        rows = slice(start, min(start + (1 << 20), n))
        bits = centres[cluster[rows]] ^ (rng.random((len(cluster[rows]), BITS),
                                                    dtype=np.float32) < 0.08)
        codes[rows] = np.packbits(bits, axis=1)
        outputs[rows] = (2.0 * bits - 1) * rng.uniform(0.3, 1.0, bits.shape).astype(np.float32)
    return codes, outputs, cluster % 100


def cifar_codes(n: int, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A run's database codes, outputs and labels, replicated to ``n`` rows."""
    with np.load(path) as saved:
        codes, outputs, labels = saved["codes"], saved["relaxed"], saved["y"]
    reps = -(-n // len(codes))
    return (np.tile(codes, (reps, 1))[:n], np.tile(outputs, (reps, 1))[:n],
            np.tile(labels, reps)[:n])


def synthetic_floats(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 256)`` float32 embeddings and ``(n,)`` labels (docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 1000), FLOAT_DIM), dtype=np.float32)
    cluster = rng.integers(0, len(centres), n)
    vectors = np.empty((n, FLOAT_DIM), dtype=np.float32)
    for start in range(0, n, 1 << 18):
        rows = slice(start, min(start + (1 << 18), n))
        vectors[rows] = centres[cluster[rows]] + 1.0 * rng.standard_normal(
            (len(cluster[rows]), FLOAT_DIM), dtype=np.float32)
    return vectors, cluster % 100


# --- folders -------------------------------------------------------------------------------


def tiny_models(work: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """A 48-bit hashing run and a 256-d embedding run on 36 tiny images: their best.pt and
    the transform spec ``deephash index`` records for them."""
    data = work / "tiny-data"
    rng = np.random.default_rng(0)
    for part, count in (("train", 8), ("test", 4)):
        for c in range(3):
            (data / part / f"class{c}").mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(rng.normal(60 + 70 * c, 30, (32, 32, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(
                    data / part / f"class{c}" / f"{i:02d}.png")
    common = ["--data-dir", str(data), "--cache-dir", str(work / "cache"), "--image-size",
              "32", "--num-workers", "0", "--tsne-points", "0", "--batch-classes", "3",
              "--batch-samples", "4", "--hidden-dims", "16", "--epochs", "1",
              "--no-flip-augment"]
    runs = {"codes": (["hash", "--bits", str(BITS)], f"bits-{BITS}/best.pt"),
            "floats": (["train", "--embedding-dim", str(FLOAT_DIM)], "best.pt")}
    found = {}
    for kind, (command, checkpoint) in runs.items():
        run = work / f"tiny-{kind}"
        if not (run / checkpoint).is_file():
            assert cli([*command, "--out", str(run), "--overwrite", *common]) == 0
        index = work / f"tiny-{kind}-index"
        if not (index / "index.json").is_file():
            assert cli(["index", "--checkpoint", str(run / checkpoint), "--data-dir", str(data),
                        "--out", str(index), "--overwrite", "--cache-dir",
                        str(work / "cache")]) == 0
        found[kind] = (run / checkpoint, json.loads((index / "index.json").read_text())["spec"])
    return found


def write_folder(out: Path, model: tuple[Path, dict[str, Any]], factory: str,
                 vectors: np.ndarray, labels: np.ndarray, outputs: np.ndarray | None,
                 nprobe: str | None, source: str, sweep: list[int]) -> dict[str, Any]:
    """An index folder of ``vectors`` built with ``factory`` for ``model`` (checkpoint,
    transform spec) and saved with ``nprobe`` (:func:`chosen_nprobe`); returns the build
    times, the sweep and the ``nprobe`` saved."""
    checkpoint, spec = model
    codes = outputs is not None
    dim = BITS if codes else FLOAT_DIM
    index = create_index(factory, dim)
    start = time.perf_counter()
    index.add(vectors)
    built = time.perf_counter() - start
    swept, saved = None, None
    if nprobe:
        queries = np.sort(np.random.default_rng(4).choice(len(vectors), 200, replace=False))
        swept = nprobe_sweep(index, vectors, codes, queries, sweep)
        saved = chosen_nprobe(swept, nprobe)
        index.configure(nprobe=saved)
    n = len(vectors)
    classes = tuple(f"c{c}" for c in range(int(labels.max()) + 1))
    paths = np.char.add(f"{source}:", np.arange(n).astype(str))
    items = Items(paths, LabelSet.from_ids(labels.astype(np.int64), len(classes)), classes,
                  np.zeros(n, dtype=bool))
    info = {"checkpoint": relative(checkpoint, out), "checkpoint_absolute": str(checkpoint),
            "index": index.factory, "codes": codes, "dim": dim, "n_items": n, "data": source,
            "spec": spec, **({} if codes else {"metric": "l2"}),
            **({"search_settings": index.settings} if index.settings else {})}
    parts: dict[str, Any] = {"index": index.save, "items": items.save}
    if outputs is not None:
        parts["outputs"] = lambda path: save_outputs(path, outputs)
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    write_index(out, info, parts)
    written = time.perf_counter() - start
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return {"index_s": round(built, 2), "write_s": round(written, 2),
            "folder_mb": round(size / 2**20, 1),
            **({"nprobe_sweep": swept, "nprobe": saved} if swept else {})}


# --- measurements --------------------------------------------------------------------------


def exact_kth(vectors: np.ndarray, queries: np.ndarray, codes: bool) -> np.ndarray:
    """``(Q,)`` the exact 10th-nearest distance of each query row (a full scan)."""
    if codes:
        ranker = CodeRanker(vectors, BITS)
        return ranker.rank(vectors[queries], K).tie_distance.astype(np.float64)
    import faiss

    distances = faiss.knn(vectors[queries], vectors, K)[0]
    return distances[:, -1].astype(np.float64)


def served_recall(port: int, vectors: np.ndarray, queries: np.ndarray, codes: bool
                  ) -> float:
    """Recall@10 of the served answers to item queries (tie-aware, module docstring)."""
    kth = exact_kth(vectors, queries, codes)
    client, recalls = Client(port), []
    for q, d_k in zip(queries, kth, strict=True):
        hits = client.json("GET", f"/items/{int(q)}/search?k={K}")["results"]
        ids = np.array([hit["id"] for hit in hits], dtype=np.int64)
        if codes:
            true = np.unpackbits(vectors[ids] ^ vectors[q], axis=1).sum(axis=1)
            recalls.append(float((true <= d_k).sum()) / K)
        else:
            true = ((vectors[ids] - vectors[q]) ** 2).sum(axis=1, dtype=np.float64)
            recalls.append(float((true <= d_k * (1 + 1e-5) + 1e-6).sum()) / K)
    return round(float(np.mean(recalls)), 4)


def nprobe_sweep(index: Any, vectors: np.ndarray, codes: bool, queries: np.ndarray,
                 values: list[int]) -> list[dict[str, Any]]:
    """In this process, one thread: recall@10 and the median time of one query (queries
    one at a time, as a served search asks) of ``index`` at each ``nprobe``, codes ranked
    as served (the ranker over the index's candidate rows)."""
    from deephash.service.searcher import one_openmp_thread

    kth = exact_kth(vectors, queries, codes)
    ranker = CodeRanker(vectors, BITS) if codes else None
    found = []
    for nprobe in values:
        index.configure(nprobe=nprobe)
        ids, times = np.empty((len(queries), K), dtype=np.int64), []
        with one_openmp_thread():
            for q, row in enumerate(queries):
                query = vectors[row:row + 1]
                start = time.perf_counter()
                if ranker is not None:
                    ids[q] = ranker.rank(query, K, None, index.candidates(query, K)).positions
                else:
                    ids[q] = index.search(query, K).ids
                times.append(time.perf_counter() - start)
        if codes:
            true = np.unpackbits(vectors[ids] ^ vectors[queries][:, None, :], axis=2).sum(
                axis=2).astype(np.float64)
            hits = true <= kth[:, None]
        else:
            true = ((vectors[ids] - vectors[queries][:, None, :]) ** 2).sum(axis=2)
            hits = true <= kth[:, None] * (1 + 1e-5) + 1e-6
        found.append({"nprobe": nprobe, "recall_at_10": round(float(hits.mean()), 4),
                      "ms_per_query": round(float(np.median(times)) * 1000, 2)})
    return found


def chosen_nprobe(swept: list[dict[str, Any]], asked: str) -> int:
    """``asked`` as a number, or for ``auto`` the smallest swept ``nprobe`` whose recall@10
    reaches the goal (the largest swept where none does): what a user reads off the sweep."""
    if asked != "auto":
        return int(asked)
    enough = [s["nprobe"] for s in swept if s["recall_at_10"] >= GOALS["recall_at_10"]]
    return min(enough) if enough else max(s["nprobe"] for s in swept)


def warm_up_concurrency(port: int, n: int) -> None:
    """8 clients at once, unmeasured: the server's first concurrent requests after start-up
    wait up to ~0.3 s once (its worker threads starting), which would otherwise be the 8
    clients' p99."""
    run_clients(port, requests_of("by_id", 40, n, [], K, 98), 8)


def serve_latency(folder: Path, n: int, args: argparse.Namespace, vectors: np.ndarray,
                  codes: bool, approximate: bool) -> dict[str, Any]:
    """Start-up, memory, latency at 1 and 8 clients and (approximate) recall through serve."""
    start = time.perf_counter()
    with server(folder, startup_s=900) as served:
        result: dict[str, Any] = {"startup_s": round(time.perf_counter() - start, 1),
                                  "rss_mb": round(rss_mb("VmRSS", served.pid))}
        warm = run_clients(served.port, requests_of("by_id", 20, n, [], K, 99), 1)
        warm_up_concurrency(served.port, n)
        # slow answers (a million tied items to re-rank) get fewer requests: ~30 s a part
        share = min(1.0, max(0.1, 30_000 / (warm["p50_ms"] * args.sequential)))
        result["sequential"] = run_clients(
            served.port, requests_of("by_id", round(args.sequential * share), n, [], K, 1), 1)
        result["concurrent"] = run_clients(
            served.port, requests_of("by_id", round(args.concurrent * share), n, [], K, 2), 8)
        if approximate:
            queries = np.sort(np.random.default_rng(3).choice(
                n, max(20, round(args.recall_queries * share)), False))
            result["recall_at_10"] = served_recall(served.port, vectors, queries, codes)
    return result


def png_batch(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    return images


def library_appends(folder: Path, batches: int, size: int, spare: bool = True
                    ) -> dict[str, Any]:
    """``add_images`` of ``batches`` segments of ``size`` items to the loaded folder;
    ``spare``: the arrays moved into spare room after the load first, as ``serve`` does
    (:func:`deephash.service.state.with_spare_room`; else the first add copies them)."""
    from deephash.service.state import grown, load_state, with_spare_room
    from deephash.service.store import append_images

    start = time.perf_counter()
    state = load_state(folder)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    if spare:
        state = with_spare_room(state)
    reserved = time.perf_counter() - start
    rng = np.random.default_rng(7)
    images = [(data, "png") for data in png_batch(size, 8)]
    times, in_memory = [], []
    for _ in range(batches):
        vectors = rng.integers(0, 256, (size, BITS // 8), dtype=np.uint8)
        outputs = rng.standard_normal((size, BITS)).astype(np.float16)
        start = time.perf_counter()  # add_images: written (fsync'd), then grown in memory
        segment, nbytes = append_images(state, vectors, images, [0], state.items.classes,
                                        outputs)
        written = time.perf_counter()
        state = grown(state, segment, nbytes)
        times.append(time.perf_counter() - start)
        in_memory.append(time.perf_counter() - written)
    return {"load_s": round(loaded, 1), "spare_room": spare,
            "spare_room_s": round(reserved, 2), "batch": size,
            "append_s": [round(t, 3) for t in times],
            "in_memory_s": [round(t, 3) for t in in_memory],
            "median_append_s": round(float(np.median(times)), 3)}


def appends_only(name: str, args: argparse.Namespace,
                 models: dict[str, tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """``--appends-only``: a codes collection's BFlat folder, library appends without and
    then with spare room made at load (side by side, nothing served)."""
    kind, source, size = name.split("-")
    if kind != "codes":
        sys.exit(f"--appends-only measures codes collections, not {name}")
    n = SIZES[size]
    vectors, outputs, labels = (cifar_codes(n, args.cifar_codes) if source == "cifar10"
                                else synthetic_codes(n))
    folder = args.work / f"{name}-BFlat"
    write_folder(folder, models[kind], "BFlat", vectors, labels, outputs, None,
                 f"{source}-{size}", [])
    del vectors, outputs, labels
    found: dict[str, Any] = {"n": n, "without_spare_room": [], "with_spare_room": []}
    for round_ in range(args.append_rounds):  # alternating: the disk's moods hit both
        for spare in (False, True):
            log(f"{name}: appends, round {round_ + 1}, spare room at load: {spare}")
            found["with_spare_room" if spare else "without_spare_room"].append(
                library_appends(folder, args.append_batches, 1000, spare))
            undo_appends(folder)  # the next load is of the same base alone
    if not args.keep:
        shutil.rmtree(folder)
    return found


def undo_appends(folder: Path) -> None:
    """Remove the append segments and added images of a generation-0 folder: the folder as
    written (loading segments would move the arrays into spare room by itself)."""
    from deephash.folders import ADDED
    from deephash.service.segments import segment_files

    for path in segment_files(folder, 0):
        path.unlink()
    shutil.rmtree(folder / ADDED, ignore_errors=True)


def median_of(runs: list[dict[str, Any]], field: str, first: bool | None = None) -> float:
    """The median of a field over :func:`library_appends` runs; of a per-add list, only
    each run's first add (``first``), only the later ones (``not first``) or all."""
    values = [value for run in runs
              for i, value in enumerate(run[field] if isinstance(run[field], list)
                                        else [run[field]])
              if first is None or (i == 0) == first]
    return float(np.median(values))


def first_appends_table(measured: dict[str, Any], cpu: str) -> str:
    """``--appends-only``'s table: per way of loading, medians over the rounds of the load,
    the spare room, the first add and (over every later add) the later adds."""
    lines = ["| collection | at load | load | spare room made | first append of 1,000 "
             "(in memory) | later appends, median (in memory) |", "|---|---|---|---|---|---|"]
    for name, found in measured.items():
        for key, label in (("without_spare_room", "nothing more"),
                           ("with_spare_room", "spare room (as `serve`)")):
            runs = found[key]
            made = (f"{median_of(runs, 'spare_room_s'):.2f} s" if runs[0]["spare_room"]
                    else "—")
            lines.append(f"| {name} | {label} | {median_of(runs, 'load_s'):.1f} s | {made} | "
                         f"{median_of(runs, 'append_s', True):.2f} s "
                         f"({median_of(runs, 'in_memory_s', True):.2f} s) | "
                         f"{median_of(runs, 'append_s', False):.2f} s "
                         f"({median_of(runs, 'in_memory_s', False):.2f} s) |")
    return "\n".join(lines) + f"\n\n*{cpu}; measured by `benchmarks/bench_scale.py " \
        "--appends-only`; medians over the rounds.*\n"


def served_appends(folder: Path, n: int, batches: int, size: int) -> dict[str, Any]:
    """``POST /items`` of ``size`` PNGs, ``batches`` times, while 8 clients search by id."""
    options = ["--max-batch", str(size), "--max-upload-bytes", str(64 * 2**20)]
    with server(folder, startup_s=900, options=options) as served:
        run_clients(served.port, requests_of("by_id", 20, n, [], K, 99), 1)
        warm_up_concurrency(served.port, n)
        bodies = []
        for b in range(batches):
            fields = [multipart("images", f"a{i}.png", data)
                      for i, data in enumerate(png_batch(size, 100 + b))]
            bodies.append(join_multipart(fields))
        searching: dict[str, Any] = {}
        done = threading.Event()

        def search() -> None:
            searching.update(run_clients(served.port, requests_of(
                "by_id", 100_000, n, [], K, 5)[:max(200, 40 * batches)], 8))
            done.set()

        thread = threading.Thread(target=search)
        thread.start()
        client, times = Client(served.port, timeout=600), []
        for body, headers in bodies:
            start = time.perf_counter()
            status, answer = client.request("POST", "/items", body, headers)
            times.append(time.perf_counter() - start)
            if status != 200:
                raise SystemExit(f"POST /items: HTTP {status}: {answer[:300]!r}")
        thread.join()
    return {"batch": size, "post_s": [round(t, 3) for t in times],
            "median_post_s": round(float(np.median(times)), 3),
            "searches_meanwhile": searching}


def join_multipart(fields: list[tuple[bytes, dict[str, str]]]) -> tuple[bytes, dict[str, str]]:
    """One multipart body of several single-field bodies of :func:`multipart`."""
    boundary = "deephash-scale-boundary"
    parts = []
    for body, headers in fields:
        own = headers["Content-Type"].split("boundary=")[1].encode()
        inner = body.split(b"--" + own)[1]  # "\r\nheaders\r\n\r\ndata\r\n"
        parts.append(b"--" + boundary.encode() + inner)
    return (b"".join(parts) + b"--" + boundary.encode() + b"--\r\n",
            {"Content-Type": f"multipart/form-data; boundary={boundary}",
             "X-Requested-With": "bench_scale"})


# --- the study -----------------------------------------------------------------------------


def run_collection(name: str, args: argparse.Namespace,
                   models: dict[str, tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    kind, source, size = name.split("-")
    n = SIZES[size]
    log(f"{name}: generating")
    outputs = None
    if kind == "codes":
        vectors, outputs, labels = (cifar_codes(n, args.cifar_codes) if source == "cifar10"
                                    else synthetic_codes(n))
        factories: list[tuple[str, str | None]] = [("BFlat", None),
                                                   (f"BIVF{args.bivf}", args.bivf_nprobe)]
    else:
        vectors, labels = synthetic_floats(n)
        factories = [("Flat", None), (f"IVF{args.ivf},Flat", args.ivf_nprobe)]
        if args.hnsw:
            factories.append(("HNSW32", None))
    result: dict[str, Any] = {"n": n, "kind": kind, "source": source, "indexes": {}}
    for factory, nprobe in factories:
        folder = args.work / f"{name}-{factory.replace(',', '_')}"
        log(f"{name} {factory}: building")
        entry = write_folder(folder, models[kind], factory, vectors, labels, outputs, nprobe,
                             f"{source}-{size}", args.sweep)
        log(f"{name} {factory}: {entry}; serving")
        entry.update(serve_latency(folder, n, args, vectors, kind == "codes",
                                   factory not in ("Flat", "BFlat")))
        if kind == "codes" and factory == "BFlat" and size in args.appends:
            log(f"{name} {factory}: appends")
            entry["appends_library"] = library_appends(folder, args.append_batches, 1000)
            entry["appends_served"] = served_appends(folder, n, args.append_batches, 1000)
        log(f"{name} {factory}: {json.dumps(entry)}")
        result["indexes"][factory] = entry
        if not args.keep:
            shutil.rmtree(folder)
    return result


def goal_of(kind: str, n: int, approximate: bool) -> float | None:
    """The issue's p50 goal (ms) for a collection and index kind, where it sets one."""
    if kind == "codes" and n == SIZES["10M"]:
        return GOALS["codes_10M_approximate_p50_ms" if approximate else "codes_10M_exact_p50_ms"]
    if kind == "floats" and n == SIZES["1M"] and approximate:
        return GOALS["floats_1M_approximate_p50_ms"]
    return None


def verdicts(kind: str, n: int, factory: str, entry: dict[str, Any]) -> list[str]:
    """The issue's goals a served index is held to, each with 'met' or 'not met'."""
    approximate = factory not in ("Flat", "BFlat")
    goal = goal_of(kind, n, approximate)
    if goal is None:
        return []
    p50 = entry["sequential"]["p50_ms"]
    met = [f"p50 < {goal:g} ms: {'met' if p50 < goal else 'not met'}"]
    if approximate:
        recall = entry.get("recall_at_10")
        ok = recall is not None and recall >= GOALS["recall_at_10"]
        met.append(f"recall >= {GOALS['recall_at_10']:g}: {'met' if ok else 'not met'}")
    return met


def shown_index(factory: str, entry: dict[str, Any]) -> str:
    """An index as the tables name it: its factory string and the nprobe it was served with."""
    return factory + (f" (nprobe {entry['nprobe']})" if "nprobe" in entry else "")


def goals_list(collections: dict[str, Any], cpu: str) -> str:
    """The README's short form: one line per goal of the issue, the measured figure and
    whether it is met (the full tables live in docs/scale.md)."""
    lines, appends = [], []
    for name, collection in collections.items():
        n, kind = collection["n"], collection["kind"]
        for factory, entry in collection["indexes"].items():
            met = verdicts(kind, n, factory, entry)
            if met:
                recall = entry.get("recall_at_10")
                at = "" if recall is None else f" at recall@10 {recall:.3f}"
                lines.append(f"- {name}, `{shown_index(factory, entry)}`: "
                             f"{entry['sequential']['p50_ms']:.1f} ms p50{at} "
                             f"({'; '.join(met)})")
            if "appends_library" in entry:
                library = entry["appends_library"]
                seconds, goal = library["median_append_s"], GOALS["append_1000_at_10M_s"]
                met_append = "met" if seconds < goal else "not met"
                appends.append(f"- {name}, `{factory}`: an append of 1,000 items in "
                               f"{seconds:.2f} s (median of {len(library['append_s'])}; the "
                               f"first after the load {library['append_s'][0]:.2f} s) while "
                               f"8 clients search (< {goal:g} s: {met_append})")
    return "\n".join(lines + appends) + f"\n\n*{cpu}; measured by `benchmarks/bench_scale.py`.*\n"


def tables(collections: dict[str, Any], cpu: str) -> dict[str, str]:
    """The Markdown of docs/scale.md's tables and the README's goals."""
    lines = ["| collection | index | build (index + folder) | folder | server memory | "
             "p50 / p99, 1 client | p50 / p99, 8 clients | recall@10 as served | goal |",
             "|---|---|---|---|---|---|---|---|---|"]
    appends = ["| collection | index | append 1,000 items: index and folder (median) | "
               "POST /items of 1,000 PNGs, embedded (median) | searches meanwhile, 8 clients, "
               "p50 / p99 |", "|---|---|---|---|---|"]
    for name, collection in collections.items():
        n, kind = collection["n"], collection["kind"]
        for factory, entry in collection["indexes"].items():
            one, eight = entry["sequential"], entry["concurrent"]
            recall = entry.get("recall_at_10")
            shown = shown_index(factory, entry)
            lines.append(
                f"| {name} | {shown} | {entry['index_s']:.0f} s + {entry['write_s']:.0f} s | "
                f"{entry['folder_mb']:,.0f} MB | {entry['rss_mb']:,} MB | "
                f"{one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms | "
                f"{eight['p50_ms']:.1f} / {eight['p99_ms']:.1f} ms | "
                f"{'exact' if recall is None else f'{recall:.3f}'} | "
                f"{'; '.join(verdicts(kind, n, factory, entry)) or '—'} |")
            if "appends_library" in entry:
                library, served = entry["appends_library"], entry["appends_served"]
                meanwhile = served["searches_meanwhile"]
                appends.append(
                    f"| {name} | {shown} | {library['median_append_s']:.2f} s | "
                    f"{served['median_post_s']:.2f} s | {meanwhile['p50_ms']:.1f} / "
                    f"{meanwhile['p99_ms']:.1f} ms |")
    sweeps = sweep_table(collections)
    note = f"\n*{cpu}; measured by `benchmarks/bench_scale.py`.*\n"
    return {"scale": "\n".join(lines) + "\n" + note,
            "appends": "\n".join(appends) + "\n" + note,
            "sweeps": "\n".join(sweeps) + "\n" + note,
            "goals": goals_list(collections, cpu)}


def sweep_table(collections: dict[str, Any]) -> list[str]:
    """The nprobe sweeps: per IVF, recall@10 and the median time of one query in process,
    at each swept nprobe (the one served in bold)."""
    swept = [(name, factory, entry) for name, collection in collections.items()
             for factory, entry in collection["indexes"].items() if "nprobe_sweep" in entry]
    values = sorted({s["nprobe"] for _, _, entry in swept for s in entry["nprobe_sweep"]})
    lines = ["| collection | index | " + " | ".join(f"nprobe {v}" for v in values) + " |",
             "|---|---|" + "---|" * len(values)]
    for name, factory, entry in swept:
        at = {s["nprobe"]: s for s in entry["nprobe_sweep"]}
        cells = []
        for v in values:
            cell = (f"{at[v]['recall_at_10']:.3f} / {at[v]['ms_per_query']:.2f} ms" if v in at
                    else "—")
            cells.append(f"**{cell}**" if v == entry.get("nprobe") else cell)
        lines.append(f"| {name} | {factory} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", default="codes-synthetic-1M,codes-synthetic-10M,"
                        "codes-cifar10-1M,codes-cifar10-10M,floats-synthetic-1M")
    parser.add_argument("--cifar-codes", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/deephash-scale"))
    parser.add_argument("--bivf", type=int, default=1024, help="nlist of BIVF")
    parser.add_argument("--bivf-nprobe", default="auto", help="nprobe BIVF is served with: "
                        "a number, or auto: the smallest swept one reaching recall@10 0.95")
    parser.add_argument("--ivf", type=int, default=1024, help="nlist of IVF,Flat")
    parser.add_argument("--ivf-nprobe", default="auto", help="as --bivf-nprobe, for IVF")
    parser.add_argument("--sweep", default="1,2,4,8,16,32",
                        help="nprobe values measured in process (recall, time per query)")
    parser.add_argument("--hnsw", action="store_true", help="also HNSW32 (a long build)")
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=400)
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument("--appends", default="10M", help="sizes whose code folders get the "
                        "append measurements (comma-separated; empty: none)")
    parser.add_argument("--append-batches", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--name", default="scale", help="the results file's name")
    parser.add_argument("--appends-only", action="store_true", help="only the library appends "
                        "of each codes collection's BFlat folder, without and with spare "
                        "room made at load (results: --name, default scale-appends)")
    parser.add_argument("--append-rounds", type=int, default=2, help="--appends-only: "
                        "rounds of (without, with spare room)")
    parser.add_argument("--retable", action="store_true", help="only rewrite the tables of "
                        "the results file from its measurements (nothing is measured)")
    args = parser.parse_args()
    if args.retable:
        path = Path(__file__).parent / "results" / f"{args.name}.json"
        saved = json.loads(path.read_text())
        machine = saved["machine"]
        cpu = f"{machine.get('cpu', 'CPU')}, {machine.get('cores', '?')} cores"
        saved["tables"] = tables(saved["collections"], cpu)
        path.write_text(json.dumps(saved, indent=2) + "\n")
        print(f"rewrote the tables of {path}")
        return
    args.appends = [s for s in args.appends.split(",") if s]
    args.sweep = [int(v) for v in args.sweep.split(",") if v]
    names = [c for c in args.collections.split(",") if c]
    if any("cifar10" in c for c in names) and not (args.cifar_codes
                                                   and args.cifar_codes.is_file()):
        sys.exit("--cifar-codes: give a hashing run's bits-48/codes/database.npz")
    args.work.mkdir(parents=True, exist_ok=True)
    models = tiny_models(args.work)
    if args.appends_only:
        from common import machine

        measured = {name: appends_only(name, args, models) for name in names}
        description = machine()
        cpu = f"{description.get('cpu', 'CPU')}, {description.get('cores', '?')} cores"
        write_result("scale-appends" if args.name == "scale" else args.name, {
            "tables": {"first_appends": first_appends_table(measured, cpu)},
            "what": "appends of 1,000 items to a loaded BFlat folder in process, without "
                    "and with spare room made at load", "collections": measured})
        return
    collections = {}
    for name in names:
        collections[name] = run_collection(name, args, models)
    from common import machine

    description = machine()
    cpu = f"{description.get('cpu', 'CPU')}, {description.get('cores', '?')} cores"
    write_result(args.name, {
        "tables": tables(collections, cpu),
        "what": "index folders of 1M/10M 48-bit codes and 1M 256-d floats served by deephash "
                "serve on localhost: build, memory, search by item id at 1 and 8 clients, "
                "recall@10 as served (tie-aware), appends of 1,000 items",
        "goals": GOALS, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                     for k, v in vars(args).items()},
        "collections": collections})


if __name__ == "__main__":
    main()
