"""Process facts for top: from /proc (the v1.3 shape), or from the host's
ps with the client's arguments (the modern shape, as dockerd does)."""

import os
import re
import subprocess

from .. import errors

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


PS = "ps"
PS_TIMEOUT = 10.0
MAX_PS_ARGS = 1024
_ASCII_SPACE = re.compile(r"[\t\n\f\r ]+")
# dockerd's rule: a renamed PID column ("-o user=PID") would defeat the pid filter.
_RENAMED_PID = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")


def _fields(line):
    """Split on ASCII white space only (a command line may hold other kinds)."""
    return [f for f in _ASCII_SPACE.split(line) if f]


def check_ps_args(ps_args):
    if len(ps_args) > MAX_PS_ARGS:
        raise errors.BadParameter(f"ps_args longer than {MAX_PS_ARGS} characters")
    for key, value in _RENAMED_PID.findall(ps_args):
        if key != "pid":
            raise errors.BadParameter(f'specifying "{key}={value}" is not allowed')


def top(pids, ps_args=None):
    """Run the host's ps with `ps_args` (default "-ef") and keep the rows of
    the processes in `pids`: (titles, rows), each row as many strings as
    there are titles (the last one keeps the spaces of the command). Rows of
    threads ("-" in the PID column, with "m") follow their process. Bad
    arguments, ps's refusals and output without a PID column raise BadParameter."""
    ps_args = ps_args or "-ef"
    check_ps_args(ps_args)
    args = ps_args.split()
    pids = sorted(pids)
    # -q limits ps to the container's pids; some options (f) refuse it, so retry without.
    out = _run_ps(args + ["-q" + ",".join(map(str, pids))]) if pids else None
    if out is None:
        out = _run_ps(args, final=True)
    return parse_ps(out, set(pids))


def _run_ps(argv, final=False):
    try:
        r = subprocess.run([PS] + argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=PS_TIMEOUT, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    except subprocess.TimeoutExpired as e:
        raise errors.PydError(f"ps: no answer within {PS_TIMEOUT:g} s") from e
    # Exit 1 without a word is ps's "no process selected": a header, no rows.
    if r.returncode == 0 or (r.returncode == 1 and not r.stderr.strip()):
        return r.stdout.decode(errors="replace")
    if not final:
        return None
    first = (r.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {r.returncode}"])[0]
    raise errors.BadParameter(f"ps: {first}")


def parse_ps(text, pids):
    """dockerd's parsePSOutput: (titles, rows) for the rows whose PID is in `pids`."""
    lines = text.split("\n")
    titles = _fields(lines[0])
    if "PID" not in titles:
        raise errors.BadParameter("Couldn't find PID field in ps output")
    at, n = titles.index("PID"), len(titles)
    rows, keep_threads = [], False
    for line in lines[1:]:
        fields = _fields(line)
        if len(fields) <= at:
            continue
        if fields[at] == "-":
            if keep_threads:
                rows.append(_row(fields, n))
            continue
        try:
            pid = int(fields[at])
        except ValueError as e:
            raise errors.BadParameter(f"Unexpected pid {fields[at]!r} in ps output") from e
        keep_threads = pid in pids
        if keep_threads:
            rows.append(_row(fields, n))
    return titles, rows


def _row(fields, n):
    """As many fields as titles: the overhanging ones are the command's words."""
    return fields[:n - 1] + [" ".join(fields[n - 1:])]
