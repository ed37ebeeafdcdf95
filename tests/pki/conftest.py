"""Fixtures for the PKI tests: a fresh pki folder and a CA in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.pki import Ca, init_ca


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    return tmp_path / "inventory" / "pki"


@pytest.fixture
def ca(pki_dir: Path) -> Ca:
    return init_ca(pki_dir)
