"""Prices, the XSHG calendar and instrument metadata."""
