"""The Alch3mist LoRA lifecycle — tools a practitioner runs on a GPU box (and that run end-to-end on ``tiny``).

``dataset``     ``alch3mist dataset build``: (original, transformed) pairs from a prompt file (FLUX.1-dev, then
                FLUX.1 Kontext [dev] without LoRA) or imported from two folders; held-out prompts kept apart
``train``       ``alch3mist lora train``: a PEFT LoRA on the Kontext transformer's attention projections with
                diffusers' Kontext objective; checkpoints, resume, TensorBoard, validation images
``evaluate``    ``alch3mist lora eval``: held-out prompts through the whole chain at LoRA scale 0 and 1 → report
``metrics``     model-free image statistics and optional CLIP similarity
``ai_toolkit``  the same dataset as an ostris ai-toolkit config, for people who train with that

Nothing heavy is imported here: the CLI imports these modules to build its parser.
"""
