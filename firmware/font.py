# Large digits for the code, drawn with framebuf rectangles in seven-segment style
# (like the LCD of a commercial token): legible from arm's length on a 0.96" 128x64
# OLED and scalable, so 6, 7 or 8 digits all fill the width.
#
#    aaaa
#   f    b
#   f    b
#    gggg
#   e    c
#   e    c
#    dddd

#            gfedcba
DIGITS = {
    "0": 0b0111111,
    "1": 0b0000110,
    "2": 0b1011011,
    "3": 0b1001111,
    "4": 0b1100110,
    "5": 0b1101101,
    "6": 0b1111101,
    "7": 0b0000111,
    "8": 0b1111111,
    "9": 0b1101111,
    "-": 0b1000000,
    " ": 0,
}

# digits -> (digit width, gap between digits, extra gap between the two groups)
LAYOUT = {6: (16, 3, 6), 7: (14, 2, 6), 8: (12, 2, 6)}


def draw_digit(fb, ch, x, y, w, h, t=3, c=1):
    """Draw one digit (0-9, '-' or ' ') with its top-left corner at x, y."""
    seg = DIGITS[ch]
    mid = y + (h - t) // 2
    low = h - (mid - y)
    if seg & 0x01:  # a
        fb.fill_rect(x, y, w, t, c)
    if seg & 0x02:  # b
        fb.fill_rect(x + w - t, y, t, mid - y + t, c)
    if seg & 0x04:  # c
        fb.fill_rect(x + w - t, mid, t, low, c)
    if seg & 0x08:  # d
        fb.fill_rect(x, y + h - t, w, t, c)
    if seg & 0x10:  # e
        fb.fill_rect(x, mid, t, low, c)
    if seg & 0x20:  # f
        fb.fill_rect(x, y, t, mid - y + t, c)
    if seg & 0x40:  # g
        fb.fill_rect(x, mid, w, t, c)


def code_width(n):
    """Pixel width of an n-digit code drawn by draw_code."""
    w, gap, group = LAYOUT.get(n, LAYOUT[8])
    return n * w + (n - 1) * gap + group


def draw_code(fb, code, y, h, screen_w=128, c=1):
    """Draw ``code`` centred on the screen, split in two groups (123 456, 1234 5678)."""
    n = len(code)
    w, gap, group = LAYOUT.get(n, LAYOUT[8])
    t = 3 if w >= 12 else 2
    x = (screen_w - code_width(n)) // 2
    split = n // 2
    for i in range(n):
        if i == split:
            x += group
        draw_digit(fb, code[i], x, y, w, h, t, c)
        x += w + gap
