"""sealbox.kms"""
