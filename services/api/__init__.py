"""The REST API: validates requests against model metadata and enqueues tasks by name."""
