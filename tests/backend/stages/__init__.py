"""Tests of the chain stages."""
