"""What a user is shown for binary codes: Hamming first, ties by the model's continuous output.

A K-bit code has only K + 1 distances, so thousands of items tie at the distance of the
k-th result (a median of 3,662 of 59,000 for 48-bit codes at k = 10), and which of them
are shown is decided by the tie-break alone. Breaking ties by pool order, as a plain
top-k does, shows the first classes of a class-sorted pool for every tied query. Here
every top-k list of codes (``deephash search``, ``serve`` by upload and by id, the
report's gallery, the served-ranking benchmark) is one call of :meth:`CodeRanker.rank`:

1. an exact scan (:mod:`deephash.index.scan`) gives every item's Hamming distance, and the
   distance d_k of the k-th nearest; **every** item at distance <= d_k is a candidate (not
   just k of them), so the choice among the tied does not depend on where they sit in the
   pool. Behind an approximate index the scan covers the rows it proposes (a binary IVF's
   probed lists' rows within the k-th distance there:
   :meth:`deephash.index.base.BinaryIndex.candidates`), ties counted among them;
2. the candidates are ordered by (Hamming distance, distance between the query's and the
   item's continuous outputs, a seeded random key): *feature re-ranking* of the ties
   (``rerank="ties"``, the default). ``rerank=R`` (an integer) orders the R nearest by
   Hamming (completed to all items tied at the R-th distance) by the continuous distance
   alone; ``rerank="none"`` keeps Hamming order and breaks ties at random. Without
   continuous outputs (index folders and runs written before they were kept) ties break
   at random as well.

The continuous distance is the one the model was trained with (``--train-distance``:
:meth:`deephash.distances.Distance.ranking_matrix`): its loss and miner ordered the
relaxed outputs by it, so it is the model's own finer judgement where the codes cannot
tell. Each of them is, on ±1 codes, an increasing function of the Hamming distance H
(squared Euclidean 4H, cosine 2H/K, DTSH's -x·y/2 = H - K/2), so it refines the Hamming
order instead of contradicting it.

The random key of item i for a query is ``splitmix64(i ^ salt)``, ``salt`` mixing the seed
and the query's code: a fixed permutation per query and seed, independent of the pool's
order and of items added later (their keys are new; the others keep theirs).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deephash.distances import Distance
from deephash.growing import GrowingArray
from deephash.hashing.codes import as_words
from deephash.index.scan import scan, within

Rerank = str | int  # "ties", "none" or R >= 1 (see registries.parse_rerank)

#: the seed of the random tie-break of every top-k list
TIE_SEED = 0

#: candidate rows compared to a query's continuous outputs at a time
RANK_CHUNK = 4096

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9),
        np.uint64(0x94D049BB133111EB))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """``(n,)`` uint64 -> ``(n,)`` uint64 well-mixed keys (Steele et al.'s finaliser)."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64) + _MIX[0]
        x = (x ^ (x >> np.uint64(30))) * _MIX[1]
        x = (x ^ (x >> np.uint64(27))) * _MIX[2]
        return x ^ (x >> np.uint64(31))


def random_keys(positions: np.ndarray, query_words: np.ndarray, seed: int) -> np.ndarray:
    """``(n,)`` uint64 tie-break keys of item ``positions`` for the query whose code is
    ``(W,)`` uint64 words."""
    salt = splitmix64(np.array([seed], dtype=np.uint64))
    for word in np.asarray(query_words, dtype=np.uint64):
        salt = splitmix64(salt ^ word)
    return splitmix64(np.asarray(positions, dtype=np.uint64) ^ salt)


def smallest_lexicographic(keys: Sequence[np.ndarray], m: int) -> np.ndarray:
    """The positions of the ``m`` smallest rows in the lexicographic order of ``keys``
    (``(M,)`` arrays, the first the most significant), in that order: ``np.lexsort(keys[::-1])
    [:m]`` without sorting all M rows (a query whose k-th distance ties with a million items
    sorts only its first m). The first key is partitioned at its m-th value; the rows tied
    there are chosen by the remaining keys, recursively. Exact when the last key has no
    repeats (the random tie-break keys have none)."""
    n = len(keys[0])
    if m >= n or n <= 8 * m + 1024:
        return np.lexsort(tuple(keys[::-1]))[:m]
    first = keys[0]
    boundary = np.partition(first, m - 1)[m - 1]
    below = np.flatnonzero(first < boundary)
    at = np.flatnonzero(first == boundary)
    need = m - len(below)
    chosen_at = (at[smallest_lexicographic([key[at] for key in keys[1:]], need)]
                 if len(keys) > 1 else at[:need])
    chosen = np.concatenate([below, chosen_at])
    return chosen[np.lexsort(tuple(key[chosen] for key in keys[::-1]))]


@dataclass(frozen=True)
class Ranked:
    """The top k of Q queries. ``positions``: ``(Q, k)`` int64 database rows (``-1`` past
    the database's size); ``distances``: ``(Q, k)`` int32 Hamming distances (``-1`` there);
    ``tie_distance``: ``(Q,)`` the Hamming distance d_k of the k-th nearest (``-1``: empty
    database); ``tied``: ``(Q,)`` how many items are at d_k; ``tied_shown``: ``(Q,)`` how
    many of those are in the top k."""

    positions: np.ndarray
    distances: np.ndarray
    tie_distance: np.ndarray
    tied: np.ndarray
    tied_shown: np.ndarray


class CodeRanker:
    """Rank packed ``(N, W)`` codes of ``bits`` bits for packed queries (see the module
    docstring). ``outputs``: ``(N, K)`` continuous outputs (float16 is enough) or ``None``;
    ``distance``: what compares them (the model's training distance)."""

    def __init__(self, codes: np.ndarray, bits: int, outputs: np.ndarray | None = None,
                 distance: Distance | None = None, rerank: Rerank = "ties",
                 seed: int = TIE_SEED) -> None:
        if outputs is not None and len(outputs) != len(codes):
            raise ValueError(f"{len(outputs)} continuous outputs for {len(codes)} codes")
        self.words = as_words(codes)
        self._growing = GrowingArray()  # the words' spare room (:meth:`extended`)
        self.bits = bits
        self.outputs = outputs
        self.distance = distance
        self.rerank = rerank
        self.seed = seed

    @property
    def size(self) -> int:
        return len(self.words)

    def extended(self, codes: np.ndarray, outputs: np.ndarray | None) -> CodeRanker:
        """This ranker with packed ``(B, W)`` ``codes`` appended (O(B): their words go to
        spare room, :mod:`deephash.growing`; this ranker still ranks its own N);
        ``outputs``: the ``(N + B, K)`` continuous outputs of all items, shared, or
        ``None``. Ranks as a ranker built over all N + B codes does."""
        if outputs is not None and len(outputs) != self.size + len(codes):
            raise ValueError(f"{len(outputs)} continuous outputs for "
                             f"{self.size + len(codes)} codes")
        grown = copy.copy(self)
        grown.words = self._growing.append(self.words, as_words(codes))
        grown.outputs = outputs
        return grown

    def with_spare_room(self) -> CodeRanker:
        """This ranker with its words in spare room (one O(N) copy now instead of in the
        first :meth:`extended`, which then copies only the new codes' words)."""
        grown = copy.copy(self)
        grown.words = self._growing.append(self.words, self.words[:0])
        return grown

    def reranks(self, query_outputs: np.ndarray | None) -> bool:
        """Whether ties are ordered by continuous outputs (else at random)."""
        return (self.rerank != "none" and self.outputs is not None
                and self.distance is not None and query_outputs is not None)

    def rank(self, queries: np.ndarray, k: int, query_outputs: np.ndarray | None = None,
             rows: Sequence[np.ndarray] | None = None) -> Ranked:
        """The top ``k`` of packed ``(Q, W)`` queries; ``query_outputs``: their ``(Q, K)``
        continuous outputs (``None``: ties at random); ``rows``: per query, the ``(M,)``
        database rows to rank (an approximate index's candidates; ``None``: every row), the
        ties then being counted among them."""
        n_queries = len(queries)
        positions = np.full((n_queries, k), -1, dtype=np.int64)
        distances = np.full((n_queries, k), -1, dtype=np.int32)
        tie = np.full(n_queries, -1, dtype=np.int32)
        tied = np.zeros(n_queries, dtype=np.int64)
        shown = np.zeros(n_queries, dtype=np.int64)
        words = as_words(queries)
        for row in range(n_queries):
            among = None if rows is None else np.asarray(rows[row], dtype=np.int64)
            if (self.size if among is None else len(among)) == 0:
                continue
            outputs = None if query_outputs is None else query_outputs[row:row + 1]
            top, found, tie[row], tied[row], shown[row] = self._rank_one(
                words[row], k, outputs, among)
            positions[row, :len(top)] = top
            distances[row, :len(top)] = found
        return Ranked(positions, distances, tie, tied, shown)

    def _rank_one(self, query_words: np.ndarray, k: int, query_outputs: np.ndarray | None,
                  among: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray, int, int, int]:
        """One query's top rows and their distances, d_k, the items at d_k and how many of
        them are shown; ``among``: the rows to rank (``None``: all)."""
        words = self.words if among is None else self.words[among]
        hamming, counts = scan(words, query_words, self.bits)
        reached = np.cumsum(counts)
        kept = min(k, len(words))
        tie = int(np.searchsorted(reached, kept))  # the first distance reaching k items
        limit = tie
        if isinstance(self.rerank, int):  # the R nearest, completed to whole groups
            limit = max(tie, int(np.searchsorted(reached, min(self.rerank, len(words)))))
        local = within(hamming, limit)
        candidates = local if among is None else among[local]
        near = hamming[local]
        keys = [random_keys(candidates, query_words, self.seed)]  # the last key sorts first
        reranking = self.reranks(query_outputs)
        if reranking:
            assert query_outputs is not None
            keys.append(self._continuous_distances(query_outputs, candidates))
        if not (reranking and isinstance(self.rerank, int)):
            keys.append(near)
        order = smallest_lexicographic(keys[::-1], kept)
        return (candidates[order], near[order], tie, int(counts[tie]),
                int((near[order] == tie).sum()))

    def _continuous_distances(self, query_outputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``(M,)`` float64 distances from one query's ``(1, K)`` outputs to those of the
        ``(M,)`` database ``rows``, :data:`RANK_CHUNK` rows at a time (the same values as in
        one go, each a function of its row alone; a million tied rows are gathered and
        compared in cache-sized pieces instead of gigabyte temporaries: about twice as
        fast)."""
        assert self.outputs is not None and self.distance is not None
        query = np.asarray(query_outputs, dtype=np.float32)
        found = np.empty(len(rows), dtype=np.float64)
        for start in range(0, len(rows), RANK_CHUNK):
            piece = np.asarray(self.outputs[rows[start:start + RANK_CHUNK]], dtype=np.float32)
            found[start:start + len(piece)] = self.distance.ranking_matrix(query, piece)[0]
        return found
