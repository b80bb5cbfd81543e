"""The outbox worker and its sinks: downloads, Slack, email, signed webhooks (see issue 4)."""
