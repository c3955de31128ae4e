"""callshield console: websocket hub, store, auth and roles, web pages."""
