"""The parts :class:`~regime_io.PostgreSQLIntegration` is assembled from (private)."""
