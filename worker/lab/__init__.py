"""Learning a style: archive corpora, stylometry, LoRA training and evaluation against the base model."""
