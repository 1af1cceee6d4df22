"""Helpers shared by the tests and the benchmarks: real servers on loopback, free ports."""
