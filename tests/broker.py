"""Broker processes for tests: the launchers live in devtools/ (shared with bench/)."""

from devtools.process import free_port, port_open
from devtools.tansu import TansuBroker as Broker

__all__ = ["Broker", "free_port", "port_open"]
