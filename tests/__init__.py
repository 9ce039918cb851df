"""Tests of material-alch3mist."""
