"""deephash: image embeddings and binary codes with triplet networks, and retrieval with them."""

from deephash.omp import prefer_passive

prefer_passive()  # before anything loads torch: OpenMP reads it once (deephash.omp says why)

__version__ = "0.1.0"
