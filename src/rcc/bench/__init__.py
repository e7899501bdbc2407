"""Benchmarks run by `rcc bench ...`: measured figures for docs/BENCHMARKS.md, not tests.

They are commands rather than timed tests because speed depends on the machine and the
server's durability settings; a test only checks that a benchmark runs and reports.
"""
