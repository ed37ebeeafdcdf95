"""Fuzz: whatever a server config holds, loading it returns a config or raises ConfigError."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.config import DaemonConfig, load_config
from runtime.errors import ConfigError

KEYS = [*DaemonConfig.__dataclass_fields__, "paths.leases", "typo"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20),
    st.sampled_from(["10.8.0.0/24", "fd00::/64", "10.8.0.1", "::", "aes-256-gcm", "/abs", "rel"]),
)
values = st.recursive(scalars, lambda v: st.lists(v, max_size=3) | st.dictionaries(st.text(max_size=8), v, max_size=3), max_leaves=8)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(KEYS), values, max_size=4))
def test_random_values_give_a_config_or_a_config_error(workdir: Path, changes: dict[str, Any]) -> None:
    raw: dict[str, Any] = {"name": "vps1", "network": "10.8.0.0/24"}
    for key, value in changes.items():
        if key.startswith("paths."):
            raw["paths"] = {key.split(".")[1]: value}
        else:
            raw[key] = value
    path = workdir / "server.yml"
    path.write_text(yaml.safe_dump(raw))
    try:
        config = load_config(path)
    except ConfigError as err:
        assert err.message.startswith("server.yml") and "\n" not in err.line()
    else:
        config.protocol()  # what passed our checks also passes the core's
        config.address_pool().allocate("alice")
