"""Long-running intake loops: the Oxen SSE listener and the pollers (see issue 3)."""
