"""Layer 0, the ground floor every other package stands on: the one error type the CLI turns into
"exit 2 and one sentence", and the one place OS errors become such sentences (`errors`); files written
whole, with the umask's mode, and the cleaning of what killed writers leave (`files`); safetensors files
through the same door (`tensors`); one writer per file or folder (`locks`); numbers checked where they
enter (`checks`); every default path hat reads or writes (`paths`) and the choice of a torch device
(`devices`). Nothing here imports another hat package. docs/FAULTS.md says what these promise.
"""
