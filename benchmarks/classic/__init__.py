"""The classic design inferq is measured against: one Celery task per request, polled."""
