"""What runs inside task pods: the durable-step SDK. Light: no kopf, no Kubernetes client, no database."""
