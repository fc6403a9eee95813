"""Exit codes and the one error type commands raise: a message for a person and the code to exit with."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `cairn` exits with. `trigger --wait` and `wait` exit with the run's outcome (0, 1, 2)."""

    OK = 0  # done; for --wait: the run Succeeded
    RUN_FAILED = 1  # --wait: the run Failed
    RUN_CANCELLED = 2  # --wait: the run was Cancelled
    NOT_FOUND = 3  # no such task, run, attempt or namespace (or Cairn's CRDs are not installed)
    INVALID = 4  # bad option or argument, payload that is not JSON or over the cap, rejected by validation
    UNREACHABLE = 5  # no usable kubeconfig or context, or the API server could not be reached
    REFUSED = 6  # the API server refused: unauthorized, forbidden, conflict (e.g. the name is taken)
    TIMEOUT = 7  # --wait --timeout elapsed before the run ended (the run goes on)
    INTERNAL = 8  # an unexpected error: a bug in cairn, please report it
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODES_HELP = """\
Exit codes:
    0  success (with --wait: the run Succeeded)
    1  with --wait: the run Failed
    2  with --wait: the run was Cancelled
    3  not found: task, run, attempt, namespace, or Cairn's CRDs
    4  invalid input: option, argument or payload (not JSON, over the cap)
    5  cluster unreachable: no kubeconfig or context, cannot connect
    6  refused by the API server: unauthorized, forbidden, name taken
    7  --timeout elapsed while waiting (the run goes on)
    8  unexpected error (a bug: please report it)
  130  interrupted (Ctrl-C)"""


class CliError(Exception):
    """An error the user can act on: printed as `error: <message>`, then cairn exits with `code`."""

    def __init__(self, code: ExitCode, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
