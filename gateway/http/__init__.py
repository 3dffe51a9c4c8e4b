"""The HTTP edge: the routes, their dependencies, the docs, the edge limits, request bodies in and
answers out."""
