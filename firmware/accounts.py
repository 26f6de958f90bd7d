# The fob's accounts: a JSON file on the board's flash.
#
#   [{"name": "github", "secret": "JBSWY3DPEHPK3PXP", "algorithm": "SHA1",
#     "digits": 6, "period": 30}, ...]
#
# The host writes it through `hwtoken fob add/remove/wipe`, which call the functions
# below over the USB serial link. Writes go to a temporary file renamed over the old one,
# so a reset in the middle leaves the old list or the new one, never half a file.
# NOTE: the secrets sit in flash unencrypted; see README.md, "Security".

import jsonfile
import totp

PATH = "accounts.json"
MAX_ACCOUNTS = 50
MAX_NAME = 40


class Account:
    """One TOTP account. ``key`` is the decoded secret."""

    def __init__(self, name, secret, algorithm="SHA1", digits=6, period=30):
        self.name = name
        self.secret = secret
        self.algorithm = algorithm
        self.digits = digits
        self.period = period
        self.key = totp.b32decode(secret)
        self._codes = {}  # counter -> code: the screen redraws every second, the code
                          # changes once a period (and a pure-Python HMAC is slow on a Pico)

    def code(self, unix_time, offset=0):
        """The code at ``unix_time``; offset=1 gives the next period's code."""
        counter = int(unix_time) // self.period + offset
        code = self._codes.get(counter)
        if code is None:
            code = totp.hotp(self.key, counter, self.digits, self.algorithm)
            if len(self._codes) >= 2:
                self._codes.clear()
            self._codes[counter] = code
        return code

    def record(self):
        return {"name": self.name, "secret": self.secret, "algorithm": self.algorithm,
                "digits": self.digits, "period": self.period}

    def info(self):
        """What may be shown or sent to the host: everything but the secret."""
        return {"name": self.name, "algorithm": self.algorithm, "digits": self.digits,
                "period": self.period}


def validate(name, secret, algorithm, digits, period):
    """Raise ValueError naming what is wrong (never echoing the secret)."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise ValueError("name must be 1-%d characters" % MAX_NAME)
    for ch in name:
        if ord(ch) < 32 or ord(ch) > 126:
            raise ValueError("name must be printable ASCII")
    if algorithm not in totp.ALGORITHMS:
        raise ValueError("algorithm must be SHA1, SHA256 or SHA512")
    if digits not in (6, 7, 8):
        raise ValueError("digits must be 6, 7 or 8")
    if not isinstance(period, int) or not 1 <= period <= 86400:
        raise ValueError("period must be 1-86400 seconds")
    if len(totp.b32decode(secret)) < 10:
        raise ValueError("secret must be at least 80 bits")


def load(path=PATH):
    """The accounts in ``path`` (an empty list when there is no file yet)."""
    try:
        records = jsonfile.read(path)
    except OSError:
        return []
    except ValueError:
        raise ValueError("the accounts file is damaged: run hwtoken fob wipe") from None
    try:
        return [Account(r["name"], r["secret"], r.get("algorithm", "SHA1"),
                        r.get("digits", 6), r.get("period", 30)) for r in records]
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ValueError("the accounts file is damaged: run hwtoken fob wipe") from None


def save(accounts, path=PATH):
    """Write ``accounts`` atomically (temporary file, then rename)."""
    jsonfile.write(path, [a.record() for a in accounts])


def add(name, secret, algorithm="SHA1", digits=6, period=30, path=PATH):
    """Add an account, or replace the one with the same name. Returns the count."""
    secret = secret.upper().replace(" ", "").rstrip("=")
    validate(name, secret, algorithm, digits, period)
    accounts = [a for a in load(path) if a.name != name]
    if len(accounts) >= MAX_ACCOUNTS:
        raise ValueError("the fob holds at most %d accounts" % MAX_ACCOUNTS)
    accounts.append(Account(name, secret, algorithm, digits, period))
    save(accounts, path)
    return len(accounts)


def remove(name, path=PATH):
    """Remove the account ``name``. Returns True if it existed."""
    accounts = load(path)
    kept = [a for a in accounts if a.name != name]
    if len(kept) == len(accounts):
        return False
    save(kept, path)
    return True


def wipe(path=PATH):
    """Forget every account: overwrite the file, then delete it (and any temporary file
    a reset in the middle of save() left behind: it holds secrets too)."""
    jsonfile.erase(path)


def summary(path=PATH):
    """The accounts without their secrets (what `hwtoken fob list` shows)."""
    return [a.info() for a in load(path)]
