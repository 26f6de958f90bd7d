"""YubiHSM Auth: YubiHSM 2 credentials on the key (:mod:`.applet`, :mod:`.records`,
:mod:`.session_keys`)."""
