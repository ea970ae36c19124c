"""The project's one exception tree.

Every error the tool raises on purpose derives from :class:`ToolError`. Its message names the
thing (device, file, tensor, field) and ends with the next step to take. User errors (bad input,
unreachable phone, broken file) are kept apart from internal ones (:class:`InternalError`: "this
is a bug, please report it"). Subpackages define their own subclasses of the classes here so that
a CLI can catch ``ToolError`` once.

Facts travel with the error as keyword arguments (``device=``, ``path=``, ``command=``, ...) and
are kept in ``err.facts`` for programs; ``str(err)`` is the one readable line for people.
"""

from __future__ import annotations

from typing import Any


class ToolError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, *, next_step: str | None = None, **facts: Any) -> None:
        self.message = message
        self.next_step = next_step
        self.facts = facts
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message.rstrip()
        if self.next_step:
            if not text.endswith((".", "!", "?", ":")):
                text += "."
            text += " " + self.next_step.strip()
        return text


class UserError(ToolError):
    """Bad input or a bad environment: the user can fix it."""


class ConfigError(UserError, ValueError):
    """An impossible configuration value (names the field and the allowed values)."""


class ModelLoadError(UserError):
    """A model source that cannot be loaded (missing, truncated, untrusted, unknown)."""


class DataError(UserError):
    """A data source that cannot be loaded or does not fit the model."""


class NothingToDoError(UserError):
    """The request selects nothing (for example no tensor large enough to cluster)."""


class OutputError(UserError):
    """An output location that cannot be written."""


class ExportError(UserError):
    """A model that cannot be exported or a file that fails verification."""


class DeviceError(UserError):
    """Anything between the host and a phone (subclassed in device_runner)."""


class ResultError(UserError):
    """A result document or store problem (subclassed in results)."""


class InternalError(ToolError):
    """A bug in this tool."""

    exit_code = 70

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(
            message,
            next_step="This is a bug, please report it with the command you ran and --debug output.",
            **facts,
        )
