"""Scripts that run inside a host (with the host's own python3), not on this machine."""
