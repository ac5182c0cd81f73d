"""The parts of the training entrypoint (`python -m clara_model.train`): configuration, ranks and DeepSpeed,
the data order, the learning-rate schedule, resume checkpoints, and the metrics record."""
