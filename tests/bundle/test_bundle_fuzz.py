"""Fuzz: whatever the bytes, loading a bundle returns one or raises `ConfigError`, never
anything else (no traceback for a user's damaged file)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.bundle import dump_bundle, load_bundle
from runtime.errors import ConfigError

from tests.bundle.bundle_helpers import NOW, Material, make_bundle

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
    st.datetimes(), st.sampled_from(["selfvpn-bundle", "1", "-----BEGIN CERTIFICATE-----\nAA", "10.0.0.0/8"]),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=5),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def load_only_config_errors(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        load_bundle(path, now=NOW)
    except ConfigError as err:
        assert err.message.startswith(f"{path.name}") and "\n" not in err.line()


@FUZZ
@given(value=yaml_values)
def test_random_yaml_is_refused_cleanly(workdir: Path, value: Any) -> None:
    load_only_config_errors(workdir / "r.bundle", yaml.safe_dump(value).encode())


@FUZZ
@given(value=yaml_values, data=st.data())
def test_bundle_with_a_field_replaced_is_refused_cleanly(
    workdir: Path, material: Material, value: Any, data: st.DataObject
) -> None:
    raw = yaml.safe_load(dump_bundle(make_bundle(material)))
    target = data.draw(st.sampled_from(list(walk(raw))))
    container, key = target
    container[key] = value
    load_only_config_errors(workdir / "f.bundle", yaml.safe_dump(raw).encode())


@FUZZ
@given(data=st.data())
def test_bundle_text_mutated_is_refused_cleanly(
    workdir: Path, material: Material, data: st.DataObject
) -> None:
    text = bytearray(dump_bundle(make_bundle(material)).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 40))
        text[at : at + cut] = data.draw(st.binary(max_size=8))
    load_only_config_errors(workdir / "m.bundle", bytes(text))


def walk(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) place in a parsed YAML tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield node, key
        yield from walk(child)


def test_walk_reaches_nested_places(material: Material) -> None:
    raw = yaml.safe_load(dump_bundle(make_bundle(material)))
    keys = {key for _, key in walk(raw)}
    assert {"servers", "port", "pin", "routes", "cipher", "key"} <= keys and 0 in keys
