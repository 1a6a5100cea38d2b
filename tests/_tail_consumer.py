"""A tail consumer for the kill/resume test: ``python -m tests._tail_consumer URL SCHEMA OUT CURSOR IDLE``.

Appends one JSON line per batch to OUT, holding the batch's rows and its cursor together
(one ``write`` + ``fsync``), so a kill at any point leaves either the whole batch or none
of it; the test resumes from the cursor of the last complete line. Exits after IDLE
seconds without a new row.
"""

from __future__ import annotations

import json
import os
import sys

from regime_io import PostgreSQLIntegration
from regime_io.config import load_settings


def main() -> None:
    url, schema, out, cursor, idle = sys.argv[1:6]
    settings = load_settings(config={"database": {"dsn": url, "schema": schema}}, env={})
    pg = PostgreSQLIntegration(settings=settings)
    with open(out, "a", encoding="utf-8") as sink, pg.follow("1min", cursor=cursor, max_rows=7, timeout=float(idle),
                                                            poll_interval=0.2) as batches:
        for batch in batches:
            rows = [[r["symbol"], r["timestamp"].isoformat(), r["regime"]] for r in batch.frame.iter_rows(named=True)]
            sink.write(json.dumps({"rows": rows, "cursor": batch.cursor}) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
    pg.close()


if __name__ == "__main__":
    main()
