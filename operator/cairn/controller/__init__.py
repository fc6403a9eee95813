"""The operator's machinery between kopf's watches and the pure domain: caches of what the watches
saw, work queues, and the reconcilers that gather a view, ask the domain, and apply the plan."""
