"""Text to and from USB boot-keyboard input reports (HID usage codes, US layout).

A report is 8 bytes: modifier, reserved, then up to six usage codes. Each character is
sent as a key press followed by an all-zero release report, the way a YubiKey types.
"""

from __future__ import annotations

SHIFT = 0x02
RELEASE = bytes(8)

_UNSHIFTED = "abcdefghijklmnopqrstuvwxyz1234567890\n\x1b\b\t -=[]\\#;'`,./"
_SHIFTED = "ABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()\n\x1b\b\t _+{}|~:\"~<>?"
# usage codes for the characters above, in the same order (0x04 'a' .. 0x38 '/')
_CODES = list(range(0x04, 0x39))

CHAR_TO_KEY: dict[str, tuple[int, int]] = {}
KEY_TO_CHAR: dict[tuple[int, int], str] = {}
for _mod, _chars in ((0, _UNSHIFTED), (SHIFT, _SHIFTED)):
    for _ch, _code in zip(_chars, _CODES, strict=True):
        if _code == 0x32:  # non-US '#': never produced, never decoded
            continue
        CHAR_TO_KEY.setdefault(_ch, (_mod, _code))
        KEY_TO_CHAR[(_mod, _code)] = _ch

# numeric keypad digits (USE_NUMERIC_KEYPAD): KP1..KP9 = 0x59..0x61, KP0 = 0x62; KP Enter
_KEYPAD = {str(d): 0x59 + d - 1 for d in range(1, 10)} | {"0": 0x62}
for _d, _code in _KEYPAD.items():
    KEY_TO_CHAR[(0, _code)] = _d
KEY_TO_CHAR[(0, 0x58)] = "\n"


def key_report(modifier: int, usage: int) -> bytes:
    """One press report."""
    return bytes([modifier, 0, usage, 0, 0, 0, 0, 0])


def encode(text: str, *, numeric_keypad: bool = False) -> list[bytes]:
    """Press/release reports typing ``text``; ValueError for characters with no key."""
    reports: list[bytes] = []
    for ch in text:
        if numeric_keypad and ch in _KEYPAD:
            mod, code = 0, _KEYPAD[ch]
        else:
            try:
                mod, code = CHAR_TO_KEY[ch]
            except KeyError:
                raise ValueError(f"no key types {ch!r}") from None
        reports += [key_report(mod, code), RELEASE]
    return reports


def encode_scancodes(codes: bytes) -> list[bytes]:
    """Reports for raw YubiKey scan codes (usage code, bit 7 meaning shift)."""
    reports: list[bytes] = []
    for c in codes:
        reports += [key_report(SHIFT if c & 0x80 else 0, c & 0x7F), RELEASE]
    return reports


def decode(reports: list[bytes]) -> str:
    """The text typed by a sequence of reports (presses counted once; releases skipped)."""
    out = []
    for r in reports:
        if len(r) < 3 or not any(r[2:]):
            continue
        mod = SHIFT if r[0] & 0x22 else 0  # left or right shift
        for code in r[2:]:
            if code:
                out.append(KEY_TO_CHAR.get((mod, code), "?"))
    return "".join(out)
