"""The editorial side loop: review actions, export of approved articles, the feedback dataset."""
