"""Scheduled and bulk jobs: cron schedules, job files, idempotent job runs and the beat scheduler."""
