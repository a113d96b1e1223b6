"""Compare: the encoder × head grid, the TF-IDF baseline, statistics and the report (torch-free but grid.py)."""
