"""Layer 3: `hat test`. `bleu` scores as HAT reported (tokenized BLEU with the compound split, SacreBLEU);
`translate` translates a split of prepared data with a model and scores it.
"""
