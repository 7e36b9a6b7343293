"""Headless studies: a scenario run to its report, and sweeps of one scenario over seeds and values."""
