"""One exception tree: every error knows its one-line message and its exit code.

Exit codes (DESIGN.md section 9): 1 operational error, 2 usage error.
"""


class CronSchedulerError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- usage errors (exit 2): the user's input is malformed -------------------------------

class UsageError(CronSchedulerError):
    exit_code = 2


class InvalidSchedule(UsageError):
    pass


class NeverFires(InvalidSchedule):
    """A well-formed schedule with no fire time (`0 0 31 2 *`): cron accepts it and never runs it."""


class InvalidDuration(UsageError):
    pass


class InvalidJobId(UsageError):
    pass


class InvalidOption(UsageError):
    pass


# --- operational errors (exit 1): well-formed input the current state refuses -----------

class OperationalError(CronSchedulerError):
    exit_code = 1


class UnknownJob(OperationalError):
    def __init__(self, job_id: str):
        super().__init__(f"unknown job id: {job_id!r}")
        self.job_id = job_id


class DuplicateJob(OperationalError):
    def __init__(self, job_id: str):
        super().__init__(f"job {job_id!r} already exists (use --replace to overwrite it)")
        self.job_id = job_id


class UnknownDependency(OperationalError):
    pass


class DependencyCycle(OperationalError):
    pass


class CorruptStore(OperationalError):
    pass


class MissingScript(OperationalError):
    pass


class UnknownAccount(OperationalError):
    """--user/--group name an account this host does not have."""


class LimitsUnavailable(OperationalError):
    """--memory-max, --cpu-max or --pids-max on a host without the cgroup v2 controller."""


class UnknownRun(OperationalError):
    pass


class CorruptRun(OperationalError):
    """A run row of state.db that does not hold a valid run (hand-edited or damaged)."""


class DaemonAlreadyRunning(OperationalError):
    pass


class InsecureHome(OperationalError):
    pass


class UnsafePath(InsecureHome):
    """A file of the home is a symbolic link (or not a regular file): refused, never followed."""


class StateWriteError(OperationalError):
    """state.db refused a write (disk full, I/O error): the daemon keeps supervising its runs
    and retries."""


class IllegalTransition(CronSchedulerError):
    """A run status change the lifecycle does not allow: a bug, or a hand-edited state.db row."""


class StateDamaged(OperationalError):
    """state.db has damaged pages: `cron-scheduler doctor --repair` rebuilds it."""
