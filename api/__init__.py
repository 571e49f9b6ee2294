"""The HTTP and WebSocket API: REST for integrators, live streams for agent desktops."""
