"""relay's benchmarks (issue 5): `python -m bench`, see docs/performance.md."""
