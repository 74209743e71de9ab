"""Layer 3: latency. `backends` is the public plugin API (the pluggy hooks, `Backend`,
`MeasurementProtocol`, plugin loading); `measure` times architectures with a backend's protocol;
`dataset` reads and writes latency CSVs and collects them resumably; `predictors` are the latency
predictor kinds (a registry), fitted on those CSVs. Importing `backends`, `dataset` or `predictors`
does not import torch.
"""
