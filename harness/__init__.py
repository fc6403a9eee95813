"""The test harness: a real Kubernetes cluster (etcd, kube-apiserver, controller-manager, scheduler,
kubelets with containerd in network namespaces, kube-proxy, KWOK) and a real PostgreSQL, started from
nothing and torn down without leaving processes, mounts, interfaces or directories behind.

Used by the pytest fixtures in `tests/conftest.py`, by `make dev-cluster` (`python -m harness`), by the
demo and by the benchmarks.
"""
