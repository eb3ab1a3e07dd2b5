"""The HTTP service (the optional ``serve`` extra): app, worker threads, request schemas, web page."""

from charlstm.errors import ConfigError


def missing_extra(exc: ModuleNotFoundError) -> ConfigError:
    """The error for an import of the ``serve`` extra that failed: what is missing, how to get it."""
    return ConfigError(f"serving needs the optional 'serve' extra ({exc.name} is not installed): "
                       "pip install 'charlstm[serve]'")
