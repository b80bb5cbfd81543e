"""The aiohttp service: webhook routes, the read/write API, the event stream, health, CLI."""
