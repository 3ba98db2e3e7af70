"""The copydesk command (Typer + Rich), one module per command group; the only code that prints."""
