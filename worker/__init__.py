"""copydesk: briefs in, styled, scored articles out."""

__version__ = "0.1.0"
