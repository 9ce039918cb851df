"""Tests of model loading, the tiny preset, memory plans and LoRAs."""
