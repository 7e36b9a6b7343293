"""Generated API code (see protos/generate.py)."""
