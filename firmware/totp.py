# One-time codes: HMAC (RFC 2104), HOTP (RFC 4226), TOTP (RFC 6238), base32 secrets.
#
# The port's hashlib is used when it has the algorithm; otherwise the pure-Python
# fallback in sha.py. hash_backend() says which one a name resolves to.

try:
    import hashlib
except ImportError:  # a port built without hashlib
    hashlib = None

import sha

ALGORITHMS = ("SHA1", "SHA256", "SHA512")
_BLOCK = {"sha1": 64, "sha256": 64, "sha512": 128}


def hash_constructor(name):
    """hashlib's constructor for 'sha1'/'sha256'/'sha512' if the port has it, else sha.py's."""
    name = name.lower()
    if name not in _BLOCK:
        raise ValueError("unknown algorithm")
    fn = getattr(hashlib, name, None) if hashlib else None
    return fn if fn is not None else getattr(sha, name)


def hash_backend(name):
    """'hashlib' or 'fallback': where hash_constructor(name) comes from."""
    fn = hash_constructor(name)
    return "fallback" if fn is getattr(sha, name.lower()) else "hashlib"


def hmac(name, key, msg, new=None):
    """HMAC-<name>(key, msg). ``new`` forces a hash constructor (tests use sha.py's)."""
    new = new or hash_constructor(name)
    block = _BLOCK[name.lower()]
    if len(key) > block:
        key = new(key).digest()
    key = key + b"\x00" * (block - len(key))
    inner = new(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = new(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def hotp(key, counter, digits=6, algorithm="SHA1", new=None):
    """The HOTP value for ``counter`` as a zero-padded string of ``digits`` digits."""
    mac = hmac(algorithm, key, counter.to_bytes(8, "big"), new)
    off = mac[-1] & 0x0F
    value = int.from_bytes(mac[off:off + 4], "big") & 0x7FFFFFFF
    code = str(value % (10 ** digits))
    return "0" * (digits - len(code)) + code


def totp(key, unix_time, digits=6, algorithm="SHA1", period=30, new=None):
    """The TOTP code valid at ``unix_time`` (seconds since 1970-01-01 UTC)."""
    return hotp(key, int(unix_time) // period, digits, algorithm, new)


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def b32decode(text):
    """Decode base32 (any case, spaces and '=' ignored). ValueError on other characters."""
    bits = 0
    nbits = 0
    out = bytearray()
    for ch in text.upper():
        if ch in " =-":
            continue
        v = _B32.find(ch)
        if v < 0:
            raise ValueError("secret is not base32")
        bits = ((bits << 5) | v) & 0xFFF
        nbits += 5
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
    return bytes(out)
