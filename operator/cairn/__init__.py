"""Cairn: durable tasks on Kubernetes."""

__version__ = "0.1.0"
