"""Built-in algorithms, each a default plugin registered through the ``rlkit`` entry points."""
