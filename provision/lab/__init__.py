"""The lab: real Debian hosts (systemd containers) in network namespaces on this machine.

Rule 1: nothing here changes the machine's own network namespace.  Every address, route,
veth, bridge and sysctl is made with `ip -n vpnlab-...` or inside a container.
Rule 2: everything the lab makes carries the prefix `vpnlab-` (namespaces, machine names)
or lives under `STATE_DIR`, so `down` can find it even after a crashed run.
"""
