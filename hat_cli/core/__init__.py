"""Layer 0, the ground floor every other package stands on: the one error type the CLI turns into
"exit 2 and one sentence" (`errors`), atomic file writes (`files`), every default path hat reads or
writes (`paths`) and the choice of a torch device (`devices`). Nothing here imports another hat package.
"""
