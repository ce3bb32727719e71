"""Throughput benchmarks of redis_toolkit_nb (run ``python -m benchmarks.run --help``)."""
