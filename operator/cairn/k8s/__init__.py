"""Thin adapters that read and write Kubernetes objects."""
