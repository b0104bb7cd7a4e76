"""Pins every Element error name sealbox can send. A renamed or new error must show up here,
because scripts written against the Element API match on these names."""

from __future__ import annotations

import importlib
import pkgutil

import sealbox
from sealbox.errors import SealboxError

PINNED = {
    "sealbox.errors.SealboxError": "xUnknown",
    "sealbox.errors.InvalidParameter": "xInvalidParameter",
    "sealbox.errors.MissingParameter": "xMissingParameter",
    "sealbox.errors.UnknownMethod": "xUnknownAPIMethod",
    "sealbox.errors.NotPermitted": "xAPINotPermitted",
    "sealbox.errors.NoSuchPath": "xDBNoSuchPath",
    "sealbox.errors.Exists": "xObjectExists",
    "sealbox.errors.InternalError": "xUnexpectedError",
    "sealbox.errors.NotFound": "xObjectDoesNotExist",
    "sealbox.errors.NodeNotFound": "xNodeIDDoesNotExist",
    "sealbox.errors.DriveNotFound": "xDriveIDDoesNotExist",
    "sealbox.errors.AccountNotFound": "xAccountIDDoesNotExist",
    "sealbox.errors.VolumeNotFound": "xVolumeIDDoesNotExist",
    "sealbox.errors.KeyServerNotFound": "xKeyServerIDDoesNotExist",
    "sealbox.errors.KeyProviderNotFound": "xKeyProviderIDDoesNotExist",
    "sealbox.errors.AdminNotFound": "xClusterAdminIDDoesNotExist",
    "sealbox.api.dispatch.RequestError": "xInvalidRequest",
    "sealbox.api.dispatch.PermissionDenied": "xPermissionDenied",
}


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


def _import_everything() -> None:
    for mod in pkgutil.walk_packages(sealbox.__path__, "sealbox."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)


def test_every_error_name_is_pinned() -> None:
    _import_everything()
    actual = {
        f"{c.__module__}.{c.__qualname__}": c.element_name
        for c in _all_subclasses(SealboxError) | {SealboxError}
        if not c.__module__.startswith("tests.")
    }
    assert actual == PINNED


def test_names_follow_element_style() -> None:
    for name in PINNED.values():
        assert name.startswith("x") and name[1].isupper(), name
