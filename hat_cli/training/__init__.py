"""Layer 3: training Super- and SubTransformers. `loop` (the resumable, multi-GPU training loop),
`checkpoint` (resumable checkpoints and averaging), `schedule` (learning-rate schedules), `loss`
(label-smoothed cross entropy) and `config` (training options: task defaults <- YAML <- CLI).
"""
