"""Process facts from /proc, for top."""

import os

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tty_name(tty_nr):
    if tty_nr == 0:
        return "?"
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}"
    return "?"


def _cputime(ticks):
    secs = ticks // _HZ
    days, secs = divmod(secs, 86400)
    h, secs = divmod(secs, 3600)
    m, s = divmod(secs, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}-{text}" if days else text


def describe(pids):
    """[{pid, tty, time, cmd}] for the living processes among `pids`, by pid."""
    out = []
    for pid in sorted(pids):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is state (field 3 of stat); tty_nr is field 7, utime 14, stime 15.
        tty_nr, utime, stime = int(fields[4]), int(fields[11]), int(fields[12])
        out.append({"pid": pid, "tty": _tty_name(tty_nr), "time": _cputime(utime + stime), "cmd": comm})
    return out
