"""hwtoken: a toolkit for hardware security tokens.

YubiKey OTP slots and OATH, FIDO2 registration and assertion, a virtual key that real
clients reach over real transports, batch provisioning, and a DIY TOTP key fob.
"""

__version__ = "0.1.0"
