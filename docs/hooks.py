"""MkDocs hooks: the CLI reference page, written from deephash's own argument parser."""
