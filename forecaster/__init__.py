"""Distributed batch forecasting: a global LSTM trained with Ray Train, applied with Ray Data."""

__version__ = "0.1.0"
