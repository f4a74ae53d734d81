"""Local sandbox cloud: real OpenStack services from PyPI on loopback."""
