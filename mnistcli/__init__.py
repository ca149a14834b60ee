"""mnistcli: train, evaluate and use PyTorch networks for handwritten digits."""

__version__ = "0.1.0"
