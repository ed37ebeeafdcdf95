"""Fuzz targets for the native data path (runtime/native/fastseal.c): filled in with it."""

from __future__ import annotations

from tests.fuzz.engine import Target

TARGETS: tuple[Target, ...] = ()
