"""sealbox.store"""
