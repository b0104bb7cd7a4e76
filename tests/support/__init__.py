"""Helpers that start real sealbox processes and talk to them as clients do."""
