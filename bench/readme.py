"""Keep one section of bench/README.md current without touching the others."""

import datetime
import fcntl
import json
import os
import platform

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
HEAD = "# Benchmarks\n\nEach script here measures pyd and records its figures below; `sudo .venv/bin/python -m bench.all` runs them all, pyd against dockerd.\n"


def update_section(title, body):
    """Replace (or append) the '## <title>' section with `body`."""
    with open(PATH, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read() or HEAD
        lines = text.splitlines(keepends=True)
        start = next((i for i, ln in enumerate(lines) if ln.strip() == f"## {title}"), None)
        new = [f"## {title}\n", "\n", body.rstrip("\n") + "\n", "\n"]
        if start is None:
            if lines and lines[-1].strip():
                lines.append("\n")
            lines += new
        else:
            end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
            lines[start:end] = new
        f.seek(0)
        f.truncate()
        f.write("".join(lines).rstrip("\n") + "\n")


def run_meta(daemon_argv):
    """Where and with what a bench ran, for its results."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "daemon": " ".join([os.path.basename(daemon_argv[0])] + list(daemon_argv[1:])),
    }


def write_results(path, res):
    """A bench's raw figures as JSON, replaced atomically (bench/results/ is not committed)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
