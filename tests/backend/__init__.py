"""Tests of the backend package, mirroring backend/src/alch3mist."""
