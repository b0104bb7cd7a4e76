"""sealbox.api"""
