"""A project's config files: the models, loading with messages that name file, line and field, and the
rules for secrets (names of environment variables, never values).
"""
