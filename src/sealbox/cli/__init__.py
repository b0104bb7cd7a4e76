"""sealbox.cli"""
