"""The exchange's WebSocket streams: frame parsing (here, Django-free) and connections."""
