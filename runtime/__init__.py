"""vpn-runtime: the tunnel runtime, server daemon and client in one package.

Rule 1: this package never imports `provision`; it is installed alone on servers and laptops.
Rule 2: the protocol core (`runtime.proto`) never reads a clock, a socket or a device.
"""

__version__ = "0.1.0"
