"""The models of the two FLUX stages.

registry  load_models(): FLUX.1-dev + FLUX.1 Kontext [dev] sharing VAE and text encoders; presets; defaults
tiny      the offline ``tiny`` preset, built once and loaded like the real weights
memory    memory plans (resident / model / group / sequential offload) and the CUDA out-of-memory retry
lora      the LoRA folder and the adapters on the Kontext transformer
"""
