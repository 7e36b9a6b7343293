"""Benchmarks: each writes a results file under bench-results/ (`twin bench ...`); never imported by the
twin itself."""
