# UTC time for the fob, from the best source it has, and whether to trust it.
#
# Sources, best first:
#   DS3231   battery-backed RTC module on I2C (address 0x68); survives power loss.
#   chip RTC the microcontroller's own clock (machine.RTC); set by `hwtoken fob sync-time`
#            over USB, or by NTP on boards with Wi-Fi. Lost when power is lost.
# Without a trusted time the fob shows "no trusted time" instead of a wrong code.
#
# Epochs: TOTP counts seconds from 1970-01-01 (unix time). MicroPython's time.time()
# counts from 2000-01-01 on some ports (older rp2 and esp32 builds) and from 1970 on
# others (unix, webassembly, newer builds). This module never relies on that: it
# converts calendar dates itself, and port_to_unix()/unix_to_port() convert explicitly.

import time

# A clock reading before this is a clock that was reset (an rp2 starts at 2021-01-01,
# an esp32 at 2000-01-01): 2025-01-01 00:00:00 UTC.
TRUST_FLOOR = 1735689600
SYNC_FILE = "clock.json"
# ...and so is one more than this much earlier than the last sync from the host.
SYNC_SLACK = 3600
# How long a sync is trusted, by source: a chip RTC runs off the board's crystal
# (+-10-30 ppm: up to ~80 s a month, more than a TOTP period), a DS3231 is +-2 ppm
# (about a minute a year). After that the fob asks for a new sync.
MAX_SYNC_AGE = {"rtc": 30 * 86400, "ds3231": 365 * 86400}


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the proleptic Gregorian date y-m-d."""
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) of day number z (days since 1970-01-01)."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    if m <= 2:
        y += 1
    return (y, m, d)


def to_unix(y, mo, d, h=0, mi=0, s=0):
    """Unix time of a UTC calendar date and time."""
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def from_unix(t):
    """(year, month, day, hour, minute, second, weekday 0=Monday) of unix time t."""
    t = int(t)
    days, rem = divmod(t, 86400)
    y, mo, d = civil_from_days(days)
    return (y, mo, d, rem // 3600, rem // 60 % 60, rem % 60, (days + 3) % 7)


def epoch_offset(epoch_year):
    """Unix time of 1 January of ``epoch_year`` (0 for 1970, 946684800 for 2000)."""
    return to_unix(epoch_year, 1, 1)


PORT_EPOCH_YEAR = time.gmtime(0)[0]


def port_to_unix(seconds, epoch_year=PORT_EPOCH_YEAR):
    """Convert time.time()-style seconds of a port with ``epoch_year`` to unix time."""
    return int(seconds) + epoch_offset(epoch_year)


def unix_to_port(t, epoch_year=PORT_EPOCH_YEAR):
    """Convert unix time to seconds since the port's epoch (what time.time() returns)."""
    return int(t) - epoch_offset(epoch_year)


def _bcd(v):
    return (v >> 4) * 10 + (v & 0x0F)


def _tobcd(v):
    return ((v // 10) << 4) | (v % 10)


class DS3231:
    """Maxim DS3231 RTC on I2C, kept in UTC, 24-hour mode, years 2000-2099."""

    name = "ds3231"

    def __init__(self, i2c, addr=0x68):
        self.i2c = i2c
        self.addr = addr

    def present(self):
        try:
            return self.addr in self.i2c.scan()
        except OSError:
            return False

    def lost_power(self):
        """True when the oscillator stopped (OSF bit): the time is not to be trusted."""
        return bool(self.i2c.readfrom_mem(self.addr, 0x0F, 1)[0] & 0x80)

    def read(self):
        r = self.i2c.readfrom_mem(self.addr, 0x00, 7)
        hour = r[2]
        if hour & 0x40:  # 12-hour mode (someone else set it): convert
            h = _bcd(hour & 0x1F) % 12 + (12 if hour & 0x20 else 0)
        else:
            h = _bcd(hour & 0x3F)
        year = 2000 + _bcd(r[6]) + (100 if r[5] & 0x80 else 0)
        return to_unix(year, _bcd(r[5] & 0x1F), _bcd(r[4] & 0x3F), h,
                       _bcd(r[1] & 0x7F), _bcd(r[0] & 0x7F))

    def write(self, t):
        y, mo, d, h, mi, s, wd = from_unix(t)
        data = bytes((_tobcd(s), _tobcd(mi), _tobcd(h), wd + 1, _tobcd(d), _tobcd(mo),
                      _tobcd(y - 2000)))
        self.i2c.writeto_mem(self.addr, 0x00, data)
        status = self.i2c.readfrom_mem(self.addr, 0x0F, 1)[0]
        self.i2c.writeto_mem(self.addr, 0x0F, bytes((status & 0x7F,)))  # clear OSF


class ChipRTC:
    """The microcontroller's RTC through machine.RTC (datetime tuples, UTC)."""

    name = "rtc"

    def __init__(self, rtc):
        self.rtc = rtc

    def lost_power(self):
        return False

    def read(self):
        y, mo, d, _wd, h, mi, s = self.rtc.datetime()[:7]
        return to_unix(y, mo, d, h, mi, s)

    def write(self, t):
        y, mo, d, h, mi, s, wd = from_unix(t)
        self.rtc.datetime((y, mo, d, wd, h, mi, s, 0))


def _read_last_sync(path):
    try:
        with open(path) as f:
            import json

            return int(json.load(f).get("synced", 0))
    except (OSError, ValueError, AttributeError):
        return 0


class Clock:
    """UTC from ``source`` (a DS3231 or ChipRTC) with a notion of trust.

    now() is the unix time, or None when the time cannot be trusted: the RTC was reset
    (earlier than TRUST_FLOOR, or over an hour earlier than the last sync), the DS3231
    lost power or does not answer, or the time was never set by this firmware (by
    `hwtoken fob sync-time` or NTP, recorded in SYNC_FILE): a clock someone else set,
    e.g. an IDE that sets the board's RTC to local time, is not trusted.
    """

    def __init__(self, source, rtc=None, sync_file=SYNC_FILE):
        self.source = source
        self.rtc = rtc  # the chip RTC, kept in step when the source is a DS3231
        self.sync_file = sync_file
        self.last_sync = _read_last_sync(sync_file)

    def raw(self):
        """The source's reading, trusted or not."""
        return self.source.read()

    def why_untrusted(self, t=None):
        """None if trusted, else a short reason."""
        try:
            if self.source.lost_power():
                return "rtc lost power"
            t = self.raw() if t is None else t
        except OSError:  # the DS3231 stopped answering (a loose wire): no time at all
            return "rtc not answering"
        if t < TRUST_FLOOR or t < self.last_sync - SYNC_SLACK:
            return "clock not set"
        if not self.last_sync:  # set by something else (an IDE may set local time)
            return "never synced"
        if t - self.last_sync > MAX_SYNC_AGE.get(self.source.name, MAX_SYNC_AGE["rtc"]):
            return "last sync too old"
        return None

    def now(self):
        try:
            t = self.raw()
        except OSError:
            return None
        return None if self.why_untrusted(t) else t

    def set(self, t):
        """Set the time to unix ``t``; return the drift corrected (old - new, seconds),
        or None if the old time meant nothing (reset, lost power, never synced)."""
        t = int(t)
        old = self.raw()
        # an old sync still leaves a running clock: its error is the drift since then
        drift = old - t if self.why_untrusted(old) in (None, "last sync too old") else None
        self.source.write(t)
        if self.rtc is not None and self.rtc is not self.source:
            self.rtc.write(t)
        self.last_sync = t
        try:
            with open(self.sync_file, "w") as f:
                f.write('{"synced": %d}' % t)
        except OSError:
            pass
        return drift

    def status(self):
        try:
            t = self.raw()
            reason = self.why_untrusted(t)
        except OSError:
            t, reason = None, "rtc not answering"
        return {"source": self.source.name, "time": t, "trusted": reason is None,
                "reason": reason, "last_sync": self.last_sync}


def detect(i2c=None, rtc=None, sync_file=SYNC_FILE):
    """A Clock on the DS3231 if one answers on ``i2c``, else on the chip RTC ``rtc``.

    On boot with a trusted DS3231 the chip RTC is set from it too.
    """
    chip = ChipRTC(rtc) if rtc is not None else None
    if i2c is not None:
        ds = DS3231(i2c)
        if ds.present():
            clk = Clock(ds, chip, sync_file)
            if chip is not None and clk.now() is not None:
                chip.write(clk.raw())
            return clk
    if chip is None:
        import machine

        chip = ChipRTC(machine.RTC())
    return Clock(chip, None, sync_file)


def ntp_sync(clock, host="pool.ntp.org"):
    """Set ``clock`` from NTP (needs a network connection). Returns the drift or None.

    micropython-lib's ntptime.time() counts from the port's epoch (2000 or 1970), so it
    is converted here. A reply before TRUST_FLOOR is refused (ValueError), not set.
    """
    import ntptime

    ntptime.host = host
    t = port_to_unix(ntptime.time())
    if t < TRUST_FLOOR:
        raise ValueError("NTP gave an implausible time")
    return clock.set(t)
