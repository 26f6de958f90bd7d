"""PIV (NIST SP 800-73-4 with Yubico's extensions): the smart-card applet of ``key.piv``.

``applet`` speaks the APDUs, ``records`` holds the persisted state, ``keys`` the
cryptography, ``attestation`` the F9 chain; :mod:`hwtoken.emulator.tlv` is the BER-TLV codec.
"""

from hwtoken.emulator.applets.piv.applet import PivApplet, PivHost

__all__ = ["PivApplet", "PivHost"]
