"""The HTTP API: checkpoints for task pods, triggers for applications."""
