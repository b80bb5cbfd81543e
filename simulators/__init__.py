"""Faithful stand-ins for the four providers, for the demo and the tests (PROVIDERS.md)."""
