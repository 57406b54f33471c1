"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/integration/test_api_fuzz.py: how to
send the bodies whose media types it has no serializer for."""

import schemathesis

# A JSON Lines dataset upload is text; a generated string goes as its UTF-8 bytes.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
