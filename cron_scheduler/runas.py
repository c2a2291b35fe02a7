"""Running a job as another account (`--user`, `--group`), as cron runs a crontab line.

The daemon, as root, drops each such run to its account in the child between fork and exec
(runner.py): supplementary groups as initgroups(3) makes them, the primary group, then the user.
The run gets HOME, USER, LOGNAME and SHELL as cron sets them (SHELL=/bin/sh: cron's, not the
account's login shell); the job's own env wins. A daemon that is not root cannot switch
accounts: such a run fails with one line (a job whose user is the daemon's own runs as it is).
The run's log and the home stay the daemon's; the home must be closed to other users (0700),
or a run as another user could read jobs.json, state.db or config.toml.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int  # the primary group: --group, else the user's own
    groups: tuple[int, ...]  # supplementary groups: the user's (/etc/group) and gid
    home: str


def account(user: str, group: str | None = None) -> Account:
    """The account a run executes as; ValueError naming what does not exist."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"user {user!r} does not exist on this host") from None
    gid = pw.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"group {group!r} does not exist on this host") from None
    return Account(user, pw.pw_uid, gid, tuple(os.getgrouplist(user, gid)), pw.pw_dir)


def for_run(user: str, group: str | None, home_root: Path) -> Account | None:
    """The account to switch to before exec (None: the daemon's own, nothing to switch);
    ValueError when it does not exist, when the daemon may not switch, or when the home is
    open to other users."""
    acct = account(user, group)
    me = os.geteuid()
    if acct.uid == me and (group is None or acct.gid == os.getegid()):
        return None
    if me != 0:
        raise ValueError(f"cannot run as user {user!r}: the daemon is not root (it runs as uid {me})")
    mode = stat.S_IMODE(os.stat(home_root).st_mode)
    if mode & 0o077:
        raise ValueError(f"refusing to run as user {user!r}: the home {home_root} is open to other users "
                         f"(mode {mode:o}; chmod 700 it)")
    return acct


def login_env(user: str | None) -> dict[str, str]:
    """HOME, USER, LOGNAME and SHELL of a run as `user`, as cron sets them ({} without one, or
    for an unknown user: that run fails at its start)."""
    if user is None:
        return {}
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return {}
    return {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": "/bin/sh"}


def workdir(acct: Account) -> str:
    """Where a run as acct starts without --cwd: its home, as with cron, else /."""
    return acct.home if os.path.isdir(acct.home) else "/"
