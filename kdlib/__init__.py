"""kdlib: a small, fast library for studying knowledge distillation on CIFAR."""

__version__ = "0.1.0"
