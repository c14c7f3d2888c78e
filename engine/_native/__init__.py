"""Compiled hot path, built from `ext/` by setup.py: `tiles` (detection) and `delta` (codec)."""
