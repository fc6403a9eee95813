"""The cairn command (also kubectl cairn)."""
