"""Layer 2: the model and its search space. `space` (search spaces, SubTransformer architectures and
their YAML), `transformer` (one layer code for Super- and SubTransformers; slicing is a property of the
weights), `directory` (model directories: safetensors + config.json), `counting` (parameters and FLOPs
with HAT's accounting) and `decoding` (greedy and beam search). Imports only `core` and `tasks`.
"""
