"""Layer 2: data for `hat` (what `hat data` writes, and the batches training, search and test read):
fairseq-compatible dictionaries and binarized datasets, tokenisation and BPE, task recipes, downloads and
token-bucketed batches.

Submodules are imported explicitly (``from hat_cli.data.dictionary import Dictionary``) so that
importing this package stays free of numpy and torch.
"""
