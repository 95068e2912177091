"""bench/generate_python.py: the common Python way to fill a pgvector table, for comparison with
loadtestd's generate runs (bench/generate). It builds the same kind of rows (base vectors with
N(0,1) components, row i = base[i mod bases] + N(0, sigma) noise, L2-normalised, short text
metadata) in plain Python, then inserts them with asyncpg's executemany of INSERT statements
in batches of 1000, the vector passed as text ('[x,y,...]'), and optionally builds the HNSW index
(CREATE INDEX ... USING hnsw (embedding vector_cosine_ops) WITH (m 16, ef_construction 64)).
Prints rows/s for the insert and the time to searchable (insert + index), then a last line
`RESULT {json}` with rows, insert_s and index_s (null without --index) for bench/generate.

  /usr/bin/python3 bench/generate_python.py DSN [--rows N] [--dim D] [--index]
"""
import argparse
import asyncio
import json
import math
import random
import time

import asyncpg


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dsn")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--bases", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--table", default="traces_py")
    ap.add_argument("--index", action="store_true")
    a = ap.parse_args()
    rnd = random.Random(42)
    bases = [[rnd.gauss(0, 1) for _ in range(a.dim)] for _ in range(min(a.bases, a.rows))]
    c = await asyncpg.connect(a.dsn)
    await c.execute("DROP TABLE IF EXISTS %s" % a.table)
    await c.execute("CREATE TABLE %s (id bigint PRIMARY KEY, title text, context_text text, "
                    "solution_text text, tags text[], created_at timestamptz, "
                    "embedding vector(%d))" % (a.table, a.dim))
    sql = ("INSERT INTO %s (id, title, context_text, solution_text, tags, created_at, embedding)"
           " VALUES ($1, $2, $3, $4, $5, now(), $6::vector)" % a.table)
    t0 = time.time()
    batch = []
    for i in range(a.rows):
        b = bases[i % len(bases)]
        v = [x + rnd.gauss(0, a.sigma) for x in b]
        n = math.sqrt(sum(x * x for x in v))
        text = "[" + ",".join("%.6g" % (x / n) for x in v) + "]"
        batch.append((i, "trace %d" % i, "context %d" % i, "solution %d" % i, ["t%d" % (i % 7)],
                      text))
        if len(batch) == 1000:
            await c.executemany(sql, batch)
            batch = []
    if batch:
        await c.executemany(sql, batch)
    insert_s = time.time() - t0
    print("python asyncpg executemany: %d rows in %.1f s = %.0f rows/s"
          % (a.rows, insert_s, a.rows / insert_s))
    index_s = None
    if a.index:
        await c.execute("SET maintenance_work_mem = '1GB'; "
                        "SET max_parallel_maintenance_workers = 2")
        t1 = time.time()
        await c.execute("CREATE INDEX ON %s USING hnsw (embedding vector_cosine_ops) "
                        "WITH (m = 16, ef_construction = 64)" % a.table)
        index_s = time.time() - t1
        print("CREATE INDEX: %.1f s; time to searchable: %.1f s" % (index_s, insert_s + index_s))
    await c.execute("DROP TABLE %s" % a.table)
    await c.close()
    print("RESULT " + json.dumps({"rows": a.rows, "insert_s": insert_s, "index_s": index_s}))


asyncio.run(main())
