"""One module per CLI command; each takes validated settings and returns an exit code."""
