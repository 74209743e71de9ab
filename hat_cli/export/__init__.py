"""Layer 2.5 (between model and latency): the model for other runtimes. `onnx` writes a SubTransformer as
two ONNX graphs, the encoder and one incremental decoder step; `runtime` runs them in ONNX Runtime behind the
encode/decode interface beam search drives, and compares them with PyTorch. Latency measures with them (the
onnxruntime backend), so they sit below it. onnx and onnxruntime are the optional extra hat-cli[onnx].
"""
