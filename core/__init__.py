"""jobtrail's pure core: values, the state machine, effect planning, settings and logging."""
