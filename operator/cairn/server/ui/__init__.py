"""The dashboard: server-rendered pages over the same PostgreSQL and Kubernetes API as the history and
trigger APIs, with live updates over server-sent events. Each request carries the person's Kubernetes
bearer token (a cookie set at login, or an Authorization header from a proxy in front); what they see
and may do is what RBAC allows them (TokenReview, SubjectAccessReview), as Argo's `client` mode does."""
