"""Approximate indexes: faiss factory strings over float embeddings (IVF, HNSW, PQ), binary
IVF, their training, search settings kept across save/reload, and recall@10 against exact
search (checked against a brute-force numpy reference, tie-aware for codes); ``deephash
index`` and ``search`` with them."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_service_api import build_tree

from deephash.cli import main
from deephash.errors import ConfigError
from deephash.index import FloatIndex, create_index, load_index, recall_at_k
from deephash.index import recall as recall_module
from deephash.index.approximate import suggest_nlist
from deephash.index.faiss_indexes import TIE_ROOM
from deephash.index.faiss_library import faiss
from deephash.index.rerank import CodeRanker
from deephash.registries import parse_index
from deephash.service.searcher import Searcher
from deephash.service.state import IndexState, load_state


def clustered(n: int = 3000, dim: int = 32, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """``(n, dim)`` float32 points around ``clusters`` well-separated centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 4
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def numpy_distances(queries: np.ndarray, database: np.ndarray, metric: str) -> np.ndarray:
    """``(Q, N)`` brute-force distances: squared L2, or 1 - cosine."""
    if metric == "cosine":
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        d = database / np.linalg.norm(database, axis=1, keepdims=True)
        return 1 - q.astype(np.float64) @ d.T.astype(np.float64)
    return ((queries[:, None, :].astype(np.float64) - database[None]) ** 2).sum(axis=2)


def numpy_recall(found: np.ndarray, queries: np.ndarray, database: np.ndarray, metric: str,
                 k: int = 10) -> float:
    """Plain recall@k: |found ∩ exact top-k| / k, the exact top-k by numpy (no ties in
    continuous data)."""
    exact = np.argsort(numpy_distances(queries, database, metric), axis=1)[:, :k]
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact, strict=True)]))


def sample_rows(n: int, queries: int = 1000, seed: int = 0) -> np.ndarray:
    """The rows recall_at_k draws as queries (its documented seeded sample)."""
    return np.sort(np.random.default_rng(seed).choice(n, min(queries, n), replace=False))


# --- float indexes --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_ivf_scanning_every_list_is_exact_and_recall_matches_numpy(metric: str) -> None:
    x = clustered()
    index = create_index("IVF16,Flat", 32, metric)
    index.add(x)
    rows = sample_rows(len(x))
    for nprobe in (1, 16):
        index.configure(nprobe=nprobe)
        found = index.search(x[rows], 10).ids
        reference = numpy_recall(found, x[rows], x, metric)
        recall = recall_at_k(index, x)
        assert recall.k == 10 and recall.queries == 1000
        # a neighbour within float32 rounding of the 10th counts as tied: at most one slot
        assert recall.value == pytest.approx(reference, abs=1e-4)
        assert (reference == 1.0) == (nprobe == 16)  # one list of 16 misses some
    exact = np.argsort(numpy_distances(x[:50], x, metric), axis=1)[:, :10]
    assert np.array_equal(index.search(x[:50], 10).ids, exact)
    assert index.settings == {"nprobe": 16} and index.approximate


def test_hnsw_recall_is_high_and_grows_with_ef_search() -> None:
    x = clustered()
    index = create_index("HNSW16", 32)
    index.add(x)
    rows = sample_rows(len(x))
    low = numpy_recall(index.search(x[rows], 10).ids, x[rows], x, "l2")
    assert recall_at_k(index, x).value == pytest.approx(low, abs=1e-12)
    index.configure(efSearch=128)
    high = recall_at_k(index, x).value
    assert high >= 0.99 and high >= low


def test_cosine_distances_are_one_minus_cosine() -> None:
    x = clustered(300)
    index = create_index("HNSW8", 32, "cosine")
    index.add(x)
    result = index.search(x[:5], 3)
    truth = numpy_distances(x[:5], x, "cosine")
    assert np.allclose(result.distances, np.take_along_axis(truth, result.ids, axis=1), atol=1e-5)
    assert np.allclose(result.distances[:, 0], 0, atol=1e-5)


def test_pq_recall_uses_true_distances_not_code_estimates() -> None:
    x = clustered()
    index = create_index("IVF16,PQ8np", 32)
    index.add(x)
    index.configure(nprobe=16)
    rows = sample_rows(len(x))
    reference = numpy_recall(index.search(x[rows], 10).ids, x[rows], x, "l2")
    assert recall_at_k(index, x).value == pytest.approx(reference, abs=1e-12)
    assert 0.2 < reference < 1.0  # 8 bytes per 32-d vector lose some neighbours


@pytest.mark.parametrize(("factory", "settings"), [
    ("IVF16,Flat", {"nprobe": 5}), ("HNSW16", {"efSearch": 40}), ("IVF16,PQ8np", {"nprobe": 3}),
    ("PQ8np", {}), ("Flat", {}),
])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_save_and_reload_keep_metric_settings_and_results(
        tmp_path: Path, factory: str, settings: dict[str, int], metric: str) -> None:
    x = clustered(2000)
    index = create_index(factory, 32, metric)
    index.add(x)
    index.configure(**settings)
    index.save(tmp_path / "index.npz")
    again = load_index(tmp_path / "index.npz")
    assert again.factory == factory and again.settings == index.settings
    assert {**settings} == {k: v for k, v in again.settings.items() if k in settings}
    assert isinstance(again, FloatIndex) and again.metric == metric
    before, after = index.search(x[:100], 10), again.search(x[:100], 10)
    assert np.array_equal(before.ids, after.ids)
    assert np.array_equal(before.distances, after.distances)
    again.add(x[:7])  # trained already: a later add (POST /items) just appends
    assert again.ntotal == 2007


def test_training_is_seeded_and_capped(tmp_path: Path) -> None:
    x = clustered(4000)
    blobs = []
    for sample in (300, 300, None):
        index = create_index("IVF8,Flat", 32, train_sample=sample)
        index.add(x)
        index.save(tmp_path / "i.npz")
        blobs.append(np.load(tmp_path / "i.npz")["faiss"].tobytes())
    assert blobs[0] == blobs[1] and blobs[0] != blobs[2]


def test_too_few_vectors_and_bad_strings_are_one_line_errors() -> None:
    x = clustered(1000)
    with pytest.raises(ConfigError, match=r"index IVF4096,PQ8 needs at least 4,096 vectors to "
                                          r"train its 4,096 lists, the collection has 1,000; "
                                          r"choose a smaller nlist \(about 4\*sqrt\(N\): IVF16\)"):
        create_index("IVF4096,PQ8", 32).add(x)
    with pytest.raises(ConfigError, match=r"index PQ8 cannot be trained on 100 vectors \(Number "
                                          r"of training points \(100\) should be at least"):
        create_index("PQ8", 32).add(x[:100])
    with pytest.raises(ConfigError, match=r"faiss cannot build index 'PQ7' over 32-d "
                                          r"embeddings \(.*multiple of the number of subq"):
        create_index("PQ7", 32)
    for bad in ("IVFx,Flat", "HNSW32,Whatever", "IDMap,Flat"):
        with pytest.raises(ConfigError, match=f"unknown index '{bad}'"):
            parse_index(bad)
    with pytest.raises(ConfigError, match="nprobe applies to IVF indexes and HNSW8 has none"):
        create_index("HNSW8", 32).configure(nprobe=4)
    with pytest.raises(ConfigError, match="efSearch applies to approximate indexes and "
                                          "BFlat-numpy has none"):
        create_index("BFlat-numpy", 16).configure(efSearch=4)
    with pytest.raises(ConfigError, match="efSearch applies to HNSW indexes and Flat has none"):
        create_index("Flat", 32).configure(efSearch=4)
    assert [suggest_nlist(n) for n in (10, 1000, 10**6)] == [1, 16, 4096]


# --- binary IVF and tie-aware recall --------------------------------------------------------


def binary_codes(n: int = 3000, bits: int = 24) -> np.ndarray:
    x = clustered(n, bits)
    return np.packbits(x > 0, axis=1)


def test_bivf_against_bflat() -> None:
    codes = binary_codes()
    flat, ivf = create_index("BFlat", 24), create_index("BIVF16", 24)
    flat.add(codes)
    ivf.add(codes)
    ivf.configure(nprobe=16)  # every list: the same distances as the flat scan
    assert np.array_equal(ivf.search(codes[:200], 10).distances,
                          flat.search(codes[:200], 10).distances)
    assert recall_at_k(ivf, codes).value == 1.0 and recall_at_k(flat, codes).value == 1.0
    ivf.configure(nprobe=1)
    rows = sample_rows(len(codes))
    exact = flat.search(codes[rows], 10).distances[:, -1]  # d_k
    found = ivf.search(codes[rows], 10)
    hits = (found.ids >= 0) & (found.distances <= exact[:, None])
    assert recall_at_k(ivf, codes).value == pytest.approx(hits.sum(axis=1).mean() / 10)
    assert recall_at_k(ivf, codes).value < 1.0


@pytest.mark.parametrize("distinct", [None, 40])
def test_bivf_candidates_are_the_probed_rows_within_the_kth_distance(distinct: int | None
                                                                     ) -> None:
    """What the service's ranker sees behind a binary IVF: the rows of the nprobe lists
    nearest the query (those the coarse quantiser assigns there) that lie within the k-th
    distance among all of those lists' rows, ties at it included, so ranking the
    candidates gives what ranking every probed row gives; where the lists hold fewer than
    k rows, all of them. An exact index proposes every row (None). ``distinct``: codes
    collapsed onto that many (ties beyond faiss's first search: its range search)."""
    codes = binary_codes()
    if distinct:
        codes = codes[np.random.default_rng(2).integers(0, distinct, len(codes))]
    flat, ivf, hnsw = create_index("BFlat", 24), create_index("BIVF16", 24), create_index(
        "BHNSW8", 24)
    for index in (flat, ivf, hnsw):
        index.add(codes)
    assert flat.candidates(codes[:3], 10) is None
    with pytest.raises(ConfigError, match="k must be at least 1"):
        ivf.candidates(codes[:3], 0)
    ranker = CodeRanker(codes, 24)
    quantizer = faiss.downcast_IndexBinary(ivf.index).quantizer
    assigned = quantizer.search(codes, 1)[1][:, 0]
    queries = codes[sample_rows(len(codes))[:50]]
    crowded = roomy = 0
    for nprobe, k in ((16, 10), (2, 10), (1, 40)):
        ivf.configure(nprobe=nprobe)
        probed = quantizer.search(queries, nprobe)[1]
        tied = 0
        for query, rows, lists in zip(queries, ivf.candidates(queries, k), probed,
                                      strict=True):
            every = np.flatnonzero(np.isin(assigned, lists))  # brute force
            distance = np.unpackbits(codes[every] ^ query, axis=1).sum(axis=1)
            d_k = np.sort(distance)[k - 1]
            np.testing.assert_array_equal(rows, every[distance <= d_k])
            tied += int((distance <= d_k).sum() > k)
            by_rows, by_every = (ranker.rank(query[None], k, None, [among])
                                 for among in (rows, every))
            np.testing.assert_array_equal(by_rows.positions, by_every.positions)
            np.testing.assert_array_equal(by_rows.tied, by_every.tied)
        assert tied > 10  # the ties at the k-th distance were there to be kept
        sizes = np.array([len(rows) for rows in ivf.candidates(queries, k)])
        crowded += int((sizes > TIE_ROOM * k).sum())
        roomy += int((sizes <= TIE_ROOM * k).sum())
    assert crowded > 10  # ties beyond faiss's first search: its range search
    assert distinct or roomy > 10  # and the first search alone
    ivf.configure(nprobe=1)
    few = len(codes)  # more than any one list holds: every row of the probed list
    for rows, lists in zip(ivf.candidates(queries[:5], few),
                           quantizer.search(queries[:5], 1)[1], strict=True):
        np.testing.assert_array_equal(rows, np.flatnonzero(np.isin(assigned, lists)))
    for rows, top in zip(hnsw.candidates(queries, 10), hnsw.search(queries, 10).ids,
                         strict=True):
        np.testing.assert_array_equal(rows, top[top >= 0])


def test_recall_of_codes_counts_ties_at_the_kth_distance_as_hits() -> None:
    codes = np.packbits(np.random.default_rng(1).random((2000, 8)) > 0.5, axis=1)  # 256 codes
    ivf = create_index("BIVF8", 8)
    ivf.add(codes)
    ivf.configure(nprobe=8)
    flat = create_index("BFlat", 8)
    flat.add(codes)
    rows = sample_rows(len(codes))
    plain = np.mean([len(set(a) & set(b)) / 10 for a, b in
                     zip(ivf.search(codes[rows], 10).ids, flat.search(codes[rows], 10).ids,
                         strict=True)])
    assert plain < 0.9  # other items of the same distance: "misses" for a set intersection
    assert recall_at_k(ivf, codes).value == 1.0


def test_bivf_round_trip_and_too_few_codes(tmp_path: Path) -> None:
    codes = binary_codes(500)
    index = create_index("BIVF8", 24)
    index.add(codes)
    index.configure(nprobe=3)
    index.save(tmp_path / "b.npz")
    again = load_index(tmp_path / "b.npz")
    assert again.settings == {"nprobe": 3}
    assert np.array_equal(again.search(codes[:20], 5).ids, index.search(codes[:20], 5).ids)
    with pytest.raises(ConfigError, match="index BIVF64 needs at least 64 vectors"):
        create_index("BIVF64", 24).add(codes[:30])


# --- deephash index and search --------------------------------------------------------------


@pytest.fixture(scope="module")
def float_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data/`` (48 images), an 8-d embedding run ``run/``, its cache ``c/``, ``index/``."""
    return build_tree(tmp_path_factory.mktemp("float"), "train").parent


def index_cli(tree: Path, out: str, *extra: str, checkpoint: str = "run/best.pt") -> int:
    return main(["index", "--checkpoint", str(tree / checkpoint), "--data-dir",
                 str(tree / "data"), "--out", str(tree / out), "--cache-dir", str(tree / "c"),
                 *extra])


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("deephash: error:")]
    assert len(lines) == 1, err
    return lines[0]


def check_nprobe_ladder(ladder: list[dict[str, float]], state: IndexState, nlist: int
                       ) -> None:
    """``index``'s nprobe ladder: 1, 2, 4, ... up to nlist or the first reaching 0.999,
    each value the recall@10 the index gives at that nprobe (recomputed here), never
    falling as more lists are probed."""
    probes = [step["nprobe"] for step in ladder]
    assert probes == [1 << i for i in range(len(probes))] or probes[-1] == nlist
    assert ladder[-1]["value"] >= 0.999 or probes[-1] == nlist
    assert all(step["value"] < 0.999 for step in ladder[:-1])
    for step in ladder:
        state.index.configure(nprobe=step["nprobe"])
        assert step["value"] == recall_at_k(state.index, state.vectors).value
        assert step["ms_per_query"] > 0
    values = [step["value"] for step in ladder]
    assert values == sorted(values) and len(ladder) > 1


def test_index_with_ivf_reports_recall_and_search_uses_it(
        float_tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Path(shutil.copytree(float_tree, tmp_path / "tree"))
    exact_searches = []
    exact_kth = recall_module._exact_kth
    monkeypatch.setattr(recall_module, "_exact_kth",
                        lambda *a: exact_searches.append(1) or exact_kth(*a))
    with caplog.at_level(logging.INFO, logger="deephash"):
        assert index_cli(tree, "ivf", "--index", "IVF4,Flat", "--nprobe", "2") == 0
    assert len(exact_searches) == 1  # the recall and every step of the ladder share it
    lines = [r.getMessage() for r in caplog.records if "recall@10" in r.getMessage()]
    assert len(lines) == 2 and lines[0].startswith(
        "recall@10 of IVF4,Flat (nprobe 2) against exact Flat: ")
    assert lines[1].startswith("recall@10 by nprobe (ms per query, batched): 1: ")
    info = json.loads((tree / "ivf" / "index.json").read_text())
    assert info["index"] == "IVF4,Flat" and info["metric"] == "cosine"  # the run's distance
    assert info["search_settings"] == {"nprobe": 2}
    recall = info["recall"]
    assert recall["k"] == 10 and recall["queries"] == 48 and recall["against"] == "Flat"
    check_nprobe_ladder(recall["by_nprobe"], load_state(tree / "ivf"), 4)
    state = load_state(tree / "ivf")
    exact = load_state(tree / "index")  # the Flat index of the same run
    assert np.allclose(state.vectors, exact.vectors / np.linalg.norm(exact.vectors, axis=1,
                                                                     keepdims=True), atol=1e-6)
    found = state.index.search(state.vectors, 10).ids
    assert recall["value"] == pytest.approx(numpy_recall(found, state.vectors, state.vectors,
                                                         "cosine"), abs=1e-12)
    query = tree / "data" / "test" / "class1" / "02.png"
    capsys.readouterr()
    assert main(["search", str(query), "--index", str(tree / "ivf"), "-k", "5",
                 "--nprobe", "4"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert len(rows) == 5 and rows[0][3].endswith("test/class1/02.png")
    assert float(rows[0][1]) < 1e-5
    searcher = Searcher.open(tree / "ivf", settings={"nprobe": 4, "efSearch": None})
    assert searcher.state.index.settings == {"nprobe": 4}
    exact_hits = Searcher.open(tree / "index").search_item(7, 10)[1]
    assert [h["id"] for h in searcher.search_item(7, 10)[1]] == [h["id"] for h in exact_hits]
    assert main(["search", str(query), "--index", str(tree / "ivf"), "--ef-search", "8"]) == 2
    assert "efSearch applies to HNSW indexes and IVF4,Flat has none" in error_line(capsys)


def test_index_with_hnsw_and_bivf(float_tree: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    tree = Path(shutil.copytree(float_tree, tmp_path / "tree"))
    assert index_cli(tree, "hnsw", "--index", "HNSW8", "--ef-search", "64") == 0
    info = json.loads((tree / "hnsw" / "index.json").read_text())
    assert info["search_settings"] == {"efSearch": 64} and info["recall"]["value"] == 1.0
    assert load_index(tree / "hnsw" / info["index_file"]).settings == {"efSearch": 64}
    hashing = build_tree(tmp_path / "hash", "hash").parent
    assert index_cli(hashing, "bivf", "--index", "BIVF4", "--nprobe", "4",
                     checkpoint="run/bits-16/best.pt") == 0
    info = json.loads((hashing / "bivf" / "index.json").read_text())
    ladder = info["recall"].pop("by_nprobe")
    assert info["recall"] == {"k": 10, "value": 1.0, "queries": 48, "against": "BFlat",
                              "settings": {"nprobe": 4}}
    check_nprobe_ladder(ladder, load_state(hashing / "bivf"), 4)
    assert "metric" not in info
    query = hashing / "data" / "test" / "class1" / "02.png"
    capsys.readouterr()
    assert main(["search", str(query), "--index", str(hashing / "bivf"), "-k", "5"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 7  # header, 5, ties line
    exact = Searcher.open(hashing / "index").answer_item(7, 10)[1]
    every_list = Searcher.open(hashing / "bivf").answer_item(7, 10)[1]  # nprobe 4 of 4
    assert every_list == exact
    one_list = Searcher.open(hashing / "bivf", settings={"nprobe": 1})
    rows = one_list.state.index.candidates(one_list.state.vectors[7:8], 10)[0]
    answer = one_list.answer_item(7, 10)[1]
    assert {hit["id"] for hit in answer.hits} <= set(rows.tolist())
    # the nearest among fewer rows are never nearer, rank by rank
    assert all(hit["distance"] >= best["distance"]
               for hit, best in zip(answer.hits, exact.hits, strict=False))
    assert index_cli(hashing, "bad", "--index", "HNSW8", checkpoint="run/bits-16/best.pt") == 2
    assert "index HNSW8 does not fit a hashing model; use BFlat" in error_line(capsys)


@pytest.mark.parametrize(("extra", "message"), [
    (["--index", "BIVF4"], "index BIVF4 does not fit a float embedding model; use Flat or a "
                           "faiss factory string"),
    (["--index", "IVF64,Flat"], "index IVF64,Flat needs at least 64 vectors to train its 64 "
                                "lists, the collection has 48; choose a smaller nlist"),
    (["--index", "PQ4"], "index PQ4 cannot be trained on 48 vectors"),
    (["--index", "PQ3"], "faiss cannot build index 'PQ3' over 8-d embeddings"),
    (["--index", "IVF4,Flat", "--ef-search", "3"], "efSearch applies to HNSW indexes and "
                                                   "IVF4,Flat has none"),
    (["--nprobe", "3"], "nprobe applies to IVF indexes and Flat has none"),
])
def test_index_refuses_in_one_line(float_tree: Path, tmp_path: Path, extra: list[str],
                                   message: str, capsys: pytest.CaptureFixture[str]) -> None:
    tree = Path(shutil.copytree(float_tree, tmp_path / "tree"))
    assert index_cli(tree, "out", *extra) == 2
    assert message in error_line(capsys)
    assert not (tree / "out").exists()
