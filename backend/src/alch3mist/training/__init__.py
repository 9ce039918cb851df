"""The Alch3mist LoRA lifecycle — tools a practitioner runs on a GPU box (and that run end-to-end on ``tiny``).

``dataset``     ``alch3mist dataset build``: (original, transformed) pairs from a prompt file (FLUX.1-dev, then
                FLUX.1 Kontext [dev] without LoRA) or imported from two folders; held-out prompts kept apart
``train``       ``alch3mist lora train``: a PEFT LoRA on the Kontext transformer; checkpoints, resume, TensorBoard,
                validation images, the LoRA file with its recipe, the run as an ai-toolkit config
``recipe``      ``TrainingRecipe``: the options that decide the LoRA and their defaults; the LoRA target sets
``objective``   diffusers' Kontext flow-matching loss, timestep schemes (diffusers' and ai-toolkit's), caption dropout
``buckets``     aspect-ratio buckets at several resolutions (ai-toolkit's rule), bucket-pure seeded batches
``records``     the dataset folder's files and ``PairRecord``: what readers of a dataset need
``evaluate``    ``alch3mist lora eval``: held-out prompts through the whole chain at LoRA scale 0 and 1 → report
``metrics``     model-free image statistics and optional CLIP similarity
``ai_toolkit``  a run's recipe (or the defaults, at dataset build) as an ostris ai-toolkit config

Nothing heavy is imported here: the CLI imports these modules to build its parser.
"""
