"""Infrastructure every feature uses: database, errors, middleware, logs, metrics."""
