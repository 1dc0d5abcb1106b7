"""State files: written to a temporary file beside the target and renamed
over it, so a reader, or a daemon started after a kill -9, sees the old or
the new file, never half. Loaders skip `*.tmp` names.

A durable write also fsyncs the file before the rename and the directory
after it, so the new file survives a power cut too. That costs about a
millisecond here; docs/storage.md says which records need it."""

import json
import os
import tempfile


def write_bytes(path, data, durable=True):
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(d)


def write_json(path, obj, durable=True):
    write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode(), durable)


def fsync_dir(d):
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_json(path):
    with open(path, "rb") as f:
        return json.loads(f.read())


def unlink_quiet(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
