"""One module per provider: its wire formats, statuses and signatures, nothing else."""
