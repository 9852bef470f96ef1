"""deephash: image embeddings and binary codes with triplet networks, and retrieval with them."""

__version__ = "0.1.0"
