"""Benchmarks: each ``python -m bench.<name> [--quick]`` prints one JSON object per line."""
