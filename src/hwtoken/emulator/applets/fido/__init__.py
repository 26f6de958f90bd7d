"""FIDO2 (CTAP 2.1) and U2F (CTAP1) for the virtual key: pure protocol logic."""
