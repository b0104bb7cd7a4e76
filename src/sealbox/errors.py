"""The one error root of sealbox.

Every error a client can see carries an Element error name (``xInvalidParameter`` …), a
message that is safe to show a client, and keeps its cause (``raise … from``) for the log.
The API layer turns any :class:`SealboxError` into ``{"error": {"code": 500, "name", "message"}}``.
Names that Element documents are used as Element uses them; the others follow Element's naming
style (``x<Thing>IDDoesNotExist``) and are project conventions. ``tests/test_error_names.py``
pins the whole table so that a renamed error is a visible, reviewed change.
"""

from __future__ import annotations

from typing import ClassVar


class SealboxError(Exception):
    """Base of every error sealbox reports to a client."""

    element_name: ClassVar[str] = "xUnknown"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_element(self) -> dict[str, object]:
        return {"code": 500, "name": self.element_name, "message": self.message}


# --- request errors ---------------------------------------------------------------------------
class InvalidParameter(SealboxError):
    element_name = "xInvalidParameter"


class MissingParameter(SealboxError):
    element_name = "xMissingParameter"

    def __init__(self, param: str) -> None:
        super().__init__(f"Missing member=[{param}]: the parameter '{param}' is required.")
        self.param = param


class UnknownMethod(SealboxError):
    element_name = "xUnknownAPIMethod"

    def __init__(self, method: str) -> None:
        super().__init__(f"Unknown method method={method}")


class NotPermitted(SealboxError):
    """The request is well formed but the cluster's state forbids it now."""

    element_name = "xAPINotPermitted"


class NoSuchPath(SealboxError):
    """Element's answer for an async handle (or other stored path) that does not exist."""

    element_name = "xDBNoSuchPath"


class Exists(SealboxError):
    """An object with the same unique name already exists."""

    element_name = "xObjectExists"


class InternalError(SealboxError):
    """An unexpected failure; the message never carries details of the cause."""

    element_name = "xUnexpectedError"


# --- objects that do not exist ----------------------------------------------------------------
class NotFound(SealboxError):
    element_name = "xObjectDoesNotExist"


class NodeNotFound(NotFound):
    element_name = "xNodeIDDoesNotExist"


class DriveNotFound(NotFound):
    element_name = "xDriveIDDoesNotExist"


class AccountNotFound(NotFound):
    element_name = "xAccountIDDoesNotExist"


class VolumeNotFound(NotFound):
    element_name = "xVolumeIDDoesNotExist"


class KeyServerNotFound(NotFound):
    element_name = "xKeyServerIDDoesNotExist"


class KeyProviderNotFound(NotFound):
    element_name = "xKeyProviderIDDoesNotExist"


class AdminNotFound(NotFound):
    element_name = "xClusterAdminIDDoesNotExist"
