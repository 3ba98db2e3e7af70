"""The Celery tasks (one of the two front doors, with cli/); task names never change."""
