"""Fixtures for the tool's tests: the same real servers and standalone loader as tests/pipelines."""

from __future__ import annotations

from tests.e2e.conftest import e2e_backend, llm  # noqa: F401  (session fixtures re-used here)
