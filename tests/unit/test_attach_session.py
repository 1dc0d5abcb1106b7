"""pyd.runtime.attach.run with a recording conn: what reaches the client
when the session fails after the head went out."""

from pyd.runtime import attach
from pyd.runtime.stdio import STDOUT, Subscriber


class RecordingConn:
    def __init__(self):
        self.out = b""
        self.closed = []

    def write(self, data):
        self.out += data

    def close_write(self):
        self.closed.append("write")

    def close_read(self):
        self.closed.append("read")

    def gone(self, half_close, probe=None):
        return False


def failing_replay():
    yield STDOUT, b"before\n", 0
    raise RuntimeError("the log broke")


def test_a_failure_after_the_head_is_written_into_the_stream_then_it_ends():
    conn = RecordingConn()
    detached = attach.run(conn, "c1", failing_replay(), None, None, tty=False, framed=False,
                          error_format=lambda m: f"Error: {m}\n".encode())
    assert detached is False
    assert conn.out == b"before\nError: the log broke\n"
    assert conn.closed == ["write", "read"]


def test_live_output_then_the_end_of_the_run():
    conn = RecordingConn()
    sub = Subscriber([STDOUT], 1 << 20)
    sub.push(STDOUT, b"live\n")
    sub.end()
    assert attach.run(conn, "c1", iter(()), sub, None, tty=False, framed=True,
                      error_format=lambda m: m.encode()) is False
    assert conn.out == attach.frame(STDOUT, b"live\n")
