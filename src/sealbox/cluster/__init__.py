"""sealbox.cluster"""
