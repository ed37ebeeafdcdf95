"""Fixtures for the bundle tests: one CA and client per session (key making is slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bundle.bundle_helpers import Material, make_material


@pytest.fixture(scope="session")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return make_material(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def other_material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    """A second, unrelated CA with its own client 'alice'."""
    return make_material(tmp_path_factory.mktemp("other-pki"))


@pytest.fixture
def bundle_path(tmp_path: Path) -> Path:
    return tmp_path / "alice.bundle"
