"""OpenPGP card 3.4 (as a YubiKey 5.7 implements it): the smart-card applet of
``key.openpgp``.

``applet`` speaks the APDUs, ``records`` holds the persisted state, ``objects`` builds the
data objects, ``algorithms`` the algorithm attributes, ``keys`` the cryptography and
``attestation`` Yubico's attestation certificates; :mod:`hwtoken.emulator.tlv` is the
BER-TLV codec.
"""

from hwtoken.emulator.applets.openpgp.applet import OpenPgpApplet

__all__ = ["OpenPgpApplet"]
