"""``python -m bench``: the benchmark suite (see :mod:`bench.suite`)."""

from .suite import main

main()
