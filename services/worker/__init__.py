"""The worker side: the Celery app, its tasks, and the machinery that runs models."""
