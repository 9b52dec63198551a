"""Models: text encoder, interest-weight model, baselines, training, evaluation, monitoring."""
