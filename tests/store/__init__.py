"""Tests of the job store, by role; most run once per engine (tests/store_engines.py)."""
