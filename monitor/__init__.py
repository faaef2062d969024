"""Hourly-abnormality monitor for string sequences: learn formats with an autoencoder, score, rank."""

__version__ = "0.1.0"

__all__ = ["__version__"]
