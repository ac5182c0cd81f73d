"""The Dagster layer: thin assets, checks, sensors and jobs over the domain modules."""
