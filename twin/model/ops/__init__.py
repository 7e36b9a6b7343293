"""Operator events: typed commands and their effects on the fleet."""
