"""Benchmarks of regime_io against the real alternatives, measured in one run on one server.

Run ``python -m benchmarks.run --rows 1000000`` (see ``benchmarks/run.py`` and
``docs/performance.md``). Every figure is a median over repeats with its min-max, and
every comparison is a ratio against a baseline measured in the same run, so numbers from
a noisy or slow machine stay comparable.

Modules:
    run        the command line entry point and the order of the sections
    data       fast, seeded, realistic one-minute bars (numpy)
    measure    timing helpers (repeats, latency percentiles) and the figure records
    server     one server per run: a fresh embedded one in a temporary directory, or ``--dsn``
    writes     ingest and re-ingest versus server-side COPY, polars, pandas, psycopg
    reads      range reads, latest rows, regime statistics
    scale      ingest rate and 1-day read time as the table grows
    memory     peak RSS of streaming reads and chunked Parquet ingest (subprocesses)
    report     JSON file, Markdown tables and the issue's targets
"""
