"""`specmesh serve`: the JSON Lines backend the Blender add-on talks to (docs/protocol.md)."""

from backend.server.loop import Server, serve

__all__ = ["Server", "serve"]
