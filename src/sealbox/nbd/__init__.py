"""sealbox.nbd"""
