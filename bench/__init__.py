"""Cairn's benchmarks: each figure measured beside a baseline in the same run (`make bench`)."""
