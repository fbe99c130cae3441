"""The JSON-lines protocol (docs/protocol.md): message handling in session.py, transports beside it."""
