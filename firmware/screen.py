# What the 128x64 OLED shows, drawn on any framebuf.FrameBuffer-like object.
#
#   +--------------------------------+
#   |github                      3/20|   account name, position in the list
#   |                                |
#   |  ### ###  ###   ### ### ###    |   the code in large digits
#   |  ...                           |
#   |                                |
#   |[#############-------]       17s|   seconds left in the period
#   +--------------------------------+
#
# The host's `hwtoken fob simulate` runs this same module to render screenshots.

import font

WIDTH = 128
HEIGHT = 64
CHAR = 8  # framebuf's built-in font is 8x8
CODE_Y = 14
CODE_H = 30
BAR_Y = 54


def _text_fit(text, chars):
    return text if len(text) <= chars else text[:chars - 1] + "~"


def draw_header(fb, name, index, count):
    pos = "%d/%d" % (index + 1, count) if count > 1 else ""
    room = WIDTH // CHAR - (len(pos) + 1 if pos else 0)
    fb.text(_text_fit(name, room), 0, 0, 1)
    if pos:
        fb.text(pos, WIDTH - len(pos) * CHAR, 0, 1)
    fb.hline(0, 10, WIDTH, 1)


def draw_bar(fb, left, period, clock=None):
    """A bar that empties as the period runs out, and the seconds left (after ``clock``,
    the time of day, when given)."""
    label = "%ds" % left if clock is None else "%s %ds" % (clock, left)
    bar_w = WIDTH - (len(label) + 1) * CHAR
    fb.rect(0, BAR_Y, bar_w, 8, 1)
    inner = (bar_w - 4) * left // period
    fb.fill_rect(2, BAR_Y + 2, inner, 4, 1)
    fb.text(label, WIDTH - len(label) * CHAR, BAR_Y, 1)


def draw_code_screen(fb, name, index, count, code, left, period, next_code=None, clock=None):
    """The normal screen. With ``next_code`` (long press) the bottom line shows it."""
    fb.fill(0)
    draw_header(fb, name, index, count)
    font.draw_code(fb, code, CODE_Y, CODE_H, WIDTH)
    if next_code is None:
        draw_bar(fb, left, period, clock)
    else:
        line = "nxt %s %ds" % (next_code, left)
        if len(line) > WIDTH // CHAR:  # 8 digits and a long period: drop the "nxt"
            line = line[4:]
        fb.text(line, (WIDTH - len(line) * CHAR) // 2, BAR_Y, 1)


def draw_message(fb, title, lines):
    """A title in inverse video and up to five lines of 16 characters."""
    fb.fill(0)
    fb.fill_rect(0, 0, WIDTH, 10, 1)
    fb.text(_text_fit(title, 16), (WIDTH - min(len(title), 16) * CHAR) // 2, 1, 0)
    y = 16
    for line in lines[:5]:
        fb.text(_text_fit(line, 16), 0, y, 1)
        y += 10


NO_TIME = ("Connect USB and", "run on the host:", "hwtoken fob", "    sync-time")
NO_ACCOUNTS = ("Connect USB and", "run on the host:", "hwtoken fob add", "    NAME")


def clock_text(now, utc_offset):
    """"HH:MM" of unix time ``now`` in the zone ``utc_offset`` minutes east of UTC."""
    minutes = (int(now) // 60 + utc_offset) % 1440
    return "%02d:%02d" % (minutes // 60, minutes % 60)


def draw(fb, accounts, index, now, show_next=False, utc_offset=None):
    """Draw the screen for ``accounts[index]`` at unix time ``now`` (None: untrusted).
    With ``utc_offset`` (minutes east of UTC) the bottom line also shows the time of day."""
    if now is None:
        draw_message(fb, "NO TRUSTED TIME", NO_TIME)
        return
    if not accounts:
        draw_message(fb, "NO ACCOUNTS", NO_ACCOUNTS)
        return
    acct = accounts[index % len(accounts)]
    code = acct.code(now)
    nxt = acct.code(now, 1) if show_next else None
    left = acct.period - int(now) % acct.period
    draw_code_screen(fb, acct.name, index % len(accounts), len(accounts), code, left,
                     acct.period, nxt, None if utc_offset is None else clock_text(now, utc_offset))
