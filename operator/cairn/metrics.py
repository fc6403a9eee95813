"""Every Prometheus metric Cairn exports, in one place (prefix `cairn_`, no unbounded labels)."""
