"""Discord-facing extensions: slash commands, buttons, rendering."""
