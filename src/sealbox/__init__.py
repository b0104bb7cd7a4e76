"""sealbox: an encrypted storage cluster speaking the Element API."""
__version__ = "0.1.0"
