# shellcheck shell=bash
# scripts/lib/pg_tuning.sh: the PostgreSQL settings for the 100K-row HNSW capacity case, in
# one place for the shell side. compose/docker-compose.capacity.yml passes the very same
# values to the pgvector container (`command: postgres -c ...`), and scripts/demo must start
# its private PostgreSQL with these, so that a capacity verdict measured by the demo and one
# measured under compose describe the same database. They must agree:
# tests/integration/test_compose.py fails when the two lists differ.
#
#   . scripts/lib/pg_tuning.sh
#   "${LT_PG_TUNING[@]}"     shared_buffers=2GB effective_cache_size=4GB ...
#   lt_pg_tuning_flags       prints: -c shared_buffers=2GB -c effective_cache_size=4GB ...
#                            (for `postgres` or `pg_ctl -o "$(lt_pg_tuning_flags)"`)
#   lt_pg_tuning_conf        prints postgresql.conf lines: shared_buffers = '2GB' ...
#
# Why these: the HNSW index of 100K x 1536 float4 vectors is about 0.8 GB and the table
# with its TOASTed embeddings about as much, so shared_buffers=2GB keeps both in PostgreSQL's
# own cache (a search touches hundreds of index pages; served from the OS cache instead,
# p99 doubles); effective_cache_size tells the planner the index stays cached;
# maintenance_work_mem=1GB lets CREATE INDEX build the whole graph in memory (below that
# pgvector warns and the build slows down several times); work_mem covers the sorts of the
# verification queries. A container needs shm_size above maintenance_work_mem for parallel
# index builds (the compose file sets 2gb).
#
# Sourcing defines variables and functions only; it changes no shell options.

LT_PG_SHARED_BUFFERS=2GB
LT_PG_EFFECTIVE_CACHE_SIZE=4GB
LT_PG_MAINTENANCE_WORK_MEM=1GB
LT_PG_WORK_MEM=64MB
export LT_PG_SHARED_BUFFERS LT_PG_EFFECTIVE_CACHE_SIZE LT_PG_MAINTENANCE_WORK_MEM LT_PG_WORK_MEM

# name=value, in the order compose lists them.
LT_PG_TUNING=(
    "shared_buffers=$LT_PG_SHARED_BUFFERS"
    "effective_cache_size=$LT_PG_EFFECTIVE_CACHE_SIZE"
    "maintenance_work_mem=$LT_PG_MAINTENANCE_WORK_MEM"
    "work_mem=$LT_PG_WORK_MEM"
)

# lt_pg_tuning_flags: the settings as server command-line flags, on one line.
lt_pg_tuning_flags() {
    local s out=()
    for s in "${LT_PG_TUNING[@]}"; do out+=(-c "$s"); done
    printf '%s\n' "${out[*]}"
}

# lt_pg_tuning_conf: the settings as postgresql.conf lines (append to a cluster's file).
lt_pg_tuning_conf() {
    local s
    for s in "${LT_PG_TUNING[@]}"; do printf "%s = '%s'\n" "${s%%=*}" "${s#*=}"; done
}
