"""Tests of alch3mist.training: dataset builder, LoRA trainer, evaluation, metrics, ai-toolkit export."""
