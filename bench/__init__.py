"""Benchmarks on public data (MovieLens-1M) and against RecBole; never imported by bert4rec."""
