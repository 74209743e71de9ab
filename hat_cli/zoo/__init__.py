"""Layer 4: the published models. `catalogue` (model_zoo.toml, names and prefixes), `hub` (Hugging Face Hub
and URL downloads), `convert` (the authors' original checkpoints, read with a restricted unpickler),
`store` (local copies, pull), `card` (model card and push) and `predictors` (HAT's shipped latency
predictors). Importing `catalogue` does not import torch.
"""
