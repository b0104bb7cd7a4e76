"""sealbox.kmip"""
