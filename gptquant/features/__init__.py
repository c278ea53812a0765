"""Article features -> point-in-time daily panel, and the score cache (see panel.py and cache.py)."""
