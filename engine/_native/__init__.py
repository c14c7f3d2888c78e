"""Compiled hot path, built from `ext/` by setup.py: `tiles` (detection), `delta` (tile codec)
and `motion` (scroll and move search)."""
