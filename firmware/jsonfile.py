# Small JSON files on the board's flash (accounts.json, settings.json), written so that a
# reset in the middle leaves the old file or the new one, never half a file.

import json
import os


def read(path):
    """The document in ``path``: OSError when there is none, ValueError when damaged."""
    with open(path) as f:
        return json.load(f)


def write(path, doc):
    """Write ``doc`` atomically: a temporary file, then a rename over the old one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    try:
        os.rename(tmp, path)
    except OSError:  # FAT cannot rename over an existing file
        os.remove(path)
        os.rename(tmp, path)


def erase(path):
    """Overwrite, then delete ``path`` and any temporary file a reset in the middle of
    write() left behind (both may hold secrets). Best effort: flash wear levelling may
    keep old blocks."""
    for name in (path, path + ".tmp"):
        try:
            size = os.stat(name)[6]
            with open(name, "w") as f:
                f.write(" " * size)
            os.remove(name)
        except OSError:
            pass
