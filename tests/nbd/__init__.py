"""Tests of the NBD server (sealbox.nbd) with real NBD clients and a raw-socket client."""
