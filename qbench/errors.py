"""The errors qbench raises. The CLI turns every `QbenchError` into one line and exit status 2."""

from __future__ import annotations


class QbenchError(Exception):
    """Bad input to qbench (a suite, a plugin, a command-line value): reported without a
    traceback."""


def describe(exc: BaseException) -> str:
    """An exception as one line: its type and its message's first line (PyTorch's dispatcher
    errors, for one, list every dispatch key on the lines after it)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class SuiteError(QbenchError):
    """A suite file that cannot be used, naming the file, the case and the field at fault."""

    def __init__(self, file: str, message: str, *, case: str | None = None,
                 field: str | None = None):
        self.file, self.case, self.field, self.message = file, case, field, message
        where = [file]
        if case is not None:
            where.append(f"case {case!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(": ".join(where) + ": " + message)


class PluginError(QbenchError):
    """A plugin that cannot be loaded or that breaks the hook contract, naming the plugin."""


class InvalidProblem(ValueError):
    """A convolution problem whose field `field` has an impossible value."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


class UnsupportedError(Exception):
    """Raised by a backend for a problem it cannot compute; the message says why.

    The runner records such a case as status ``unsupported`` with this message, not as an error.
    """
