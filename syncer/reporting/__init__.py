"""What a run reports beyond its own output: the Dagster asset events every front door shares."""
