"""kopf wiring only: parse, decide (domain), apply (k8s, store)."""
