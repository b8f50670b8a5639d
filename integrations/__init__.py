"""Adapters between autolr and other frameworks. Each module imports its framework lazily."""
