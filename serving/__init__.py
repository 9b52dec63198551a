"""Serving: the model store packaging, the Bento HTTP service and batch scoring."""
