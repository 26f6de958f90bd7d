"""Transports that carry the virtual key's bytes: USB/IP, PC/SC (vpcd), fido2 and pyusb adapters."""
