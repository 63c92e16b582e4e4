"""Test helpers (not tests): data set trees, the tiny config and CLI runner, W&B log reader.

Importable as ``helpers.*`` because tests/conftest.py puts tests/ on ``sys.path``; shared
pytest fixtures built on them live in tests/conftest.py.
"""
