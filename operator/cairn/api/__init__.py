"""The Cairn API: pydantic models of Task, TaskRun and Queue, the single source of the CRDs."""
