"""Drafts -> scorecards: text metrics, embeddings, the memorisation guard and near-duplicates."""
