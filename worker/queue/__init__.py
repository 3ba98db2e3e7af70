"""The Celery app, job submission, the reconciler that keeps broker and store in agreement, fork safety."""
