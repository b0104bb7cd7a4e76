"""sealbox.storage"""
