"""Benchmarks of issue 8: `make bench` or `python -m bench [--quick]`. They print figures; they are not tests."""
