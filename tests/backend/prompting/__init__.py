"""Tests of alch3mist.prompting."""
