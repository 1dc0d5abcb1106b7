"""Exec records: one per `POST /containers/{id}/exec`, kept in memory only,
as dockerd does (a daemon restart kills every container, and their execs
with them). A record is started at most once; its exit code stays for
inspection until the container is gone (records of removed containers are
dropped when the next exec is created, or when looked up).
"""

import copy
import secrets
import threading
from dataclasses import dataclass, field
from typing import List, Optional

from .. import errors
from .plan import DEFAULT_PATH


@dataclass
class ExecRecord:
    id: str
    container_id: str
    entrypoint: str
    arguments: List[str]
    tty: bool = False
    privileged: bool = False
    user: str = ""
    open_stdin: bool = False
    open_stdout: bool = False
    open_stderr: bool = False
    detach_keys: str = ""
    working_dir: str = ""
    env: List[str] = field(default_factory=list)
    started: bool = False
    running: bool = False
    exit_code: Optional[int] = None
    pid: int = 0
    can_remove: bool = False

    @property
    def argv(self):
        return [self.entrypoint] + list(self.arguments)

    @property
    def command(self):
        """How events name it: Docker's "<entrypoint> <args...>"."""
        return " ".join(self.argv)


def check_create(cmd, env, user, workdir, detach_keys):
    """Refuse what could never start; returns (argv, env list)."""
    if not isinstance(cmd, list) or not cmd:
        raise errors.BadParameter("No exec command specified")
    if not all(isinstance(a, str) for a in cmd) or not cmd[0]:
        raise errors.BadParameter("Cmd must be a list of strings with a non-empty first entry")
    env = env or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise errors.BadParameter("Env must be a list of strings")
    for name, value in (("User", user), ("WorkingDir", workdir), ("DetachKeys", detach_keys)):
        if not isinstance(value, str):
            raise errors.BadParameter(f"{name} must be a string")
    if workdir and not workdir.startswith("/"):
        raise errors.BadParameter(f"WorkingDir {workdir!r} must be an absolute path")
    for s in [*cmd, *env, user, workdir]:
        if "\0" in s:
            raise errors.BadParameter("Cmd, Env, User and WorkingDir must not hold a null byte")
    return list(cmd), list(env)


def environment(config, hostname, tty, extra):
    """Docker's exec environment: PATH, HOSTNAME (and TERM with a tty), the
    container's Env, then the exec's Env; a later NAME=value replaces an
    earlier one of the same name, in place. HOME comes from the exec's
    user when neither sets it (runtime.execs)."""
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"] + (["TERM=xterm"] if tty else [])
    out, where = [], {}
    for item in base + list(config.get("Env") or []) + list(extra):
        name = item.partition("=")[0]
        if name in where:
            out[where[name]] = item
        else:
            where[name] = len(out)
            out.append(item)
    return out


class ExecStore:
    def __init__(self):
        self._lock = threading.Lock()
        self._records = {}

    def add(self, rec_args, live_containers):
        """A new record (ExecRecord fields but the id); drops the records
        of containers no longer in `live_containers` (a set of ids)."""
        with self._lock:
            for eid in [e for e, r in self._records.items() if r.container_id not in live_containers]:
                del self._records[eid]
            while True:
                eid = secrets.token_hex(32)
                if eid not in self._records:
                    break
            rec = self._records[eid] = ExecRecord(id=eid, **rec_args)
            return copy.deepcopy(rec)

    def get(self, exec_id):
        """A copy of the record; NotFound if there is none."""
        with self._lock:
            rec = self._records.get(exec_id)
            if rec is None:
                raise errors.NotFound(f"No such exec instance: {exec_id}")
            return copy.deepcopy(rec)

    def drop(self, exec_id):
        with self._lock:
            self._records.pop(exec_id, None)

    def ids_of(self, cid):
        with self._lock:
            return [e for e, r in self._records.items() if r.container_id == cid]

    def check_startable(self, exec_id):
        rec = self.get(exec_id)
        if rec.started:
            raise _started(exec_id, rec)
        return rec

    def claim(self, exec_id):
        """Mark it started (once): Conflict for a second start."""
        with self._lock:
            rec = self._records.get(exec_id)
            if rec is None:
                raise errors.NotFound(f"No such exec instance: {exec_id}")
            if rec.started:
                raise _started(exec_id, rec)
            rec.started = True
            return copy.deepcopy(rec)

    def update(self, exec_id, **fields):
        with self._lock:
            rec = self._records.get(exec_id)
            if rec is not None:
                for k, v in fields.items():
                    setattr(rec, k, v)


def _started(exec_id, rec):
    """dockerd's words for a second start."""
    if rec.running:
        return errors.Conflict(f"Exec command {exec_id} is already running")
    return errors.Conflict(f"Exec command {exec_id} has already run")
