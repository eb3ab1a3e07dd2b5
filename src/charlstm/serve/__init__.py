"""The HTTP service (the optional ``serve`` extra): app, worker threads, request schemas, web page."""
