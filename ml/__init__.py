"""Models: the versioned store, training of the demo models, and prediction."""
