"""inferq services: the REST API, the worker pools and the code they share."""
