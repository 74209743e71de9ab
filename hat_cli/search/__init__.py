"""Layer 4: searching a SubTransformer under a latency budget. `fitness` (validation loss with inherited
weights), `algorithm` (the interface a search algorithm implements, and a registry), `evolution` (HAT's
evolutionary search, one implementation), `outputs` (history and explored CSVs, the Pareto front, its
plot) and `run` (one search from resolved inputs to written outputs).
"""
