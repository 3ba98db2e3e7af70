"""What a style is on disk: style.yaml (the catalogue) and its adapter versions."""
