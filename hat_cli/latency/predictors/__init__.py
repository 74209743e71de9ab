"""Latency predictors: `base` (the Predictor interface, the rows it learns from, the registry of kinds),
one module per kind (`layer_cost`, hat's default; `hat_mlp`, HAT's MLP), and `fitting` (fit, evaluate,
save/load, plot). Prediction needs numpy only.
"""
