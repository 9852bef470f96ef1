"""The search service, ``deephash serve``: an index folder kept warm behind an HTTP API.

``folder`` reads an index folder and ``items`` its per-row records; ``store`` adds images
to it atomically; ``embedder`` turns images into the model's vectors; ``searcher`` answers
queries with everything loaded once (``deephash search`` runs the same path); ``uploads``
decodes untrusted image bytes within limits; ``app`` is the FastAPI application and
``guard`` its ASGI safety net; ``serve`` runs it on uvicorn. This package's ``__init__``
and ``config`` import neither torch nor FastAPI, so the command line stays fast.
"""
