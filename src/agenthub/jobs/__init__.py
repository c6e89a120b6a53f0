"""Background jobs: the database-backed queue, workers, workflows and the built-in kinds."""
