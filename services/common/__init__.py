"""Code the API and the workers share: settings, Redis keys, task records, telemetry."""
