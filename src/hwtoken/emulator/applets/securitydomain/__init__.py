"""The GlobalPlatform Security Domain: SCP03/SCP11 keys and secure channels (:mod:`.applet`,
:mod:`.handshake`, :mod:`.keyload`, :mod:`.data`, :mod:`.records`, :mod:`.attestation`)."""
