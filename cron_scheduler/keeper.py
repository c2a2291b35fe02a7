"""The pipe keeper: one long-lived process that holds a read end of each run's output FIFO for
as long as the run's main process lives, so that a daemon crash never SIGPIPEs a run (runner.py).

The daemon hands it (pidfd, FIFO read end) pairs over a UNIX socket (SCM_RIGHTS): one message
per run, no fork of the daemon per run. The keeper drops a pair when its pidfd says the run's
main process exited. It runs in its own session, so it outlives the daemon; once the daemon's
end of the socket is gone (stopped or crashed) it takes no new pairs and exits when it holds
none. A restarted daemon starts a keeper of its own; the old one keeps the old runs' FIFOs.

This file is also the keeper's program (`python -I -S keeper.py`, fd 3 the socket): standard
library only, nothing of the package imported, so that it starts in a few milliseconds.
"""

from __future__ import annotations

import array
import os
import select
import socket
import sys

SOCKET_FD = 3  # the keeper's end of the socket, in the keeper


class Keeper:
    """The daemon's side: starts the keeper process on first use, and again if it died."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.pid: int | None = None

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            null = os.devnull
            self.pid = os.posix_spawn(
                sys.executable, [sys.executable, "-I", "-S", __file__], {},
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, null, os.O_RDONLY, 0),
                              (os.POSIX_SPAWN_OPEN, 1, null, os.O_WRONLY, 0),
                              (os.POSIX_SPAWN_OPEN, 2, null, os.O_WRONLY, 0),
                              (os.POSIX_SPAWN_DUP2, theirs.fileno(), SOCKET_FD)],
                setsid=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours

    def hold(self, pidfd: int, pipe_fd: int) -> bool:
        """Give the keeper copies of both fds (the caller keeps and closes its own). False if
        no keeper can take them."""
        fds = array.array("i", [pidfd, pipe_fd])
        for _ in range(2):  # a keeper that died (killed by someone) is replaced once
            try:
                if self.sock is None:
                    self.start()
                self.sock.sendmsg([b"k"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                return True
            except OSError:
                self.close()
        return False

    def close(self) -> None:
        """Let go of the keeper: it exits once the runs it holds have all ended."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def serve(sock: socket.socket) -> None:
    """The keeper's loop: hold each pair until its pidfd fires; exit once the daemon's end is
    closed and nothing is held."""
    held: dict[int, int] = {}  # pidfd -> FIFO read end
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    open_ = True
    while open_ or held:
        for fd, _ in poller.poll():
            if fd in held:
                poller.unregister(fd)
                os.close(held.pop(fd))
                os.close(fd)
                continue
            try:
                data, anc, _, _ = sock.recvmsg(16, socket.CMSG_SPACE(2 * 4 * 8))
            except OSError:
                data, anc = b"", []
            if not data:  # the daemon's end is gone: take nothing more
                poller.unregister(sock.fileno())
                sock.close()
                open_ = False
                continue
            fds = array.array("i")
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            for pidfd, pipe_fd in zip(fds[::2], fds[1::2]):
                held[pidfd] = pipe_fd
                poller.register(pidfd, select.POLLIN)


if __name__ == "__main__":
    serve(socket.socket(fileno=SOCKET_FD))
