"""Pins the Element error names of the self-encrypting drive. ``tests/unit/test_error_names.py``
pins the whole table and must get these lines when the SED is integrated (this helper was
asked to add files only)."""

from __future__ import annotations

from sealbox.errors import SealboxError
from sealbox.storage import sed_errors

PINNED = {
    "SedError": "xSedFailed",
    "SedIOError": "xSedIOFailed",
    "SedMetadataCorrupt": "xSedMetadataCorrupt",
    "SedFormatUnsupported": "xSedFormatUnsupported",
    "SedLocked": "xSedLocked",
    "SedAuthenticationFailed": "xSedAuthenticationFailed",
    "SedLockedOut": "xSedLockedOut",
    "SedStateError": "xSedStateInvalid",
}


def test_every_sed_error_name_is_pinned() -> None:
    actual = {
        name: cls.element_name
        for name, cls in vars(sed_errors).items()
        if isinstance(cls, type) and issubclass(cls, SealboxError) and cls is not SealboxError
    }
    assert actual == PINNED


def test_every_sed_error_is_a_sed_error_and_element_styled() -> None:
    for name, element in PINNED.items():
        cls = getattr(sed_errors, name)
        assert issubclass(cls, sed_errors.SedError)
        assert element.startswith("xSed") and element[4].isupper()
        assert cls("m").to_element() == {"code": 500, "name": element, "message": "m"}
