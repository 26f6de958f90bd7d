# The fob's settings: which board, which pins, how the display behaves.
# `hwtoken fob deploy --board pico|picow|esp32` writes BOARD; "auto" detects it.

BOARD = "auto"

# Pins per board. I2C: the SSD1306 (0x3C) and the optional DS3231 (0x68) share the bus.
# Buttons connect a GPIO to GND (internal pull-ups are used). BUTTON_B is optional (None).
PINS = {
    # Raspberry Pi Pico / Pico W: I2C0 on GP4 (pin 6) / GP5 (pin 7), buttons GP14, GP15.
    "pico": {"i2c": 0, "sda": 4, "scl": 5, "button_a": 14, "button_b": 15},
    "picow": {"i2c": 0, "sda": 4, "scl": 5, "button_a": 14, "button_b": 15},
    # ESP32 DevKit: I2C on GPIO21/GPIO22; button A is the board's BOOT button (GPIO0).
    "esp32": {"i2c": 0, "sda": 21, "scl": 22, "button_a": 0, "button_b": 4},
}

OLED_ADDR = 0x3C
I2C_FREQ = 400000

BRIGHT = 255          # contrast while in use
DIM = 8               # contrast after DIM_AFTER_S seconds without a press
DIM_AFTER_S = 15
OFF_AFTER_S = 60      # display off after this; any press wakes it (0: never)
LONG_PRESS_MS = 700

# Wi-Fi boards (Pico W, ESP32) set their clock by NTP at boot when these are filled in.
WIFI_SSID = ""
WIFI_PASSWORD = ""
NTP_HOST = "pool.ntp.org"


def board():
    """The board name: BOARD, or detected from the port when BOARD is "auto"."""
    if BOARD != "auto":
        return BOARD
    import sys

    if sys.platform == "esp32":
        return "esp32"
    try:
        import os

        if "Pico W" in os.uname().machine:
            return "picow"
    except (AttributeError, OSError):
        pass
    return "pico"


def pins():
    return PINS[board()]
