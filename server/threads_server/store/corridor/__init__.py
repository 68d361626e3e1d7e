"""The corridor: the one way every Redis call of the service goes."""
