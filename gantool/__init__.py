"""gantool: train DCGAN-family image generators and serve them fast."""

__version__ = "0.1.0"
