"""vae-cli: train variational auto-encoders from the command line."""

__version__ = "0.2.0"
