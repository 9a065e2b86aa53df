"""The detector in PyTorch: the network, training, prediction, the trust score's calibration, evaluation and
feature importance."""
