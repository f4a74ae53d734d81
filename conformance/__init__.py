"""Conformance suite proving an OpenStack cloud meets OpenDev's requirements for donated test resources."""

__version__ = "0.1.0"
