/*
 * generate: the "generate" run kind. Fills a PostgreSQL table with synthetic "traces" (text
 * metadata and an embedding, pgvector's vector(dim) or real[]) by binary COPY on parallel
 * connections, then builds or rebuilds the HNSW index. The rows are a pure function of the seed
 * and the row number, so any split across connections and batches loads the same bytes.
 *
 * The data-generation functions are exposed for the tests; the runner itself is generate_ops.
 */
#ifndef LT_GENERATE_H
#define LT_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "runner.h"

extern const struct runner_ops generate_ops;

/* Limits of the spec (also used by the tests). */
#define GEN_MAX_ROWS        1000000000LL
#define GEN_MAX_DIM         16000                /* pgvector's VECTOR_MAX_DIM */
#define GEN_MAX_HNSW_DIM    2000                 /* pgvector's HNSW_MAX_DIM for vector */
#define GEN_MAX_BASE_FLOATS (32LL * 1024 * 1024) /* base_vectors * dim: 128 MiB of floats */
#define GEN_MAX_CONNECTIONS 64
#define GEN_MAX_TABLE_PART  48 /* so "<table>_embedding_hnsw" fits PostgreSQL's 63 bytes */

/* What determines the rows. */
struct gen_params {
    uint64_t seed;
    int dim;
    int base_vectors;
    double noise_sigma;
};

/* The PRNG: xoshiro256** seeded with four splitmix64 outputs, one stream per (seed, tag, index),
 * and a ziggurat gaussian on top. */
struct gen_rng {
    uint64_t s[4];
};

void gen_rng_seed(struct gen_rng *g, uint64_t seed, uint64_t tag, uint64_t index);
uint64_t gen_rng_next(struct gen_rng *g);
/* Standard normal N(0, 1). */
double gen_rng_gauss(struct gen_rng *g);

/* Base vector b (N(0,1) components) into out[0..dim). */
void gen_base_vector(const struct gen_params *p, int b, float *out);
/* All base vectors, base b at [b * dim]. Returns new (caller frees), NULL when out of memory. */
float *gen_base_vectors_new(const struct gen_params *p);

/* Row i's embedding into out[0..dim): base[i mod base_vectors] + N(0, noise_sigma) noise per
 * component, L2-normalised. base is gen_base_vectors_new's; scratch holds dim doubles. */
void gen_row_embedding(const struct gen_params *p, const float *base, int64_t i, float *out,
                       double *scratch);

/* Row i's id: a bijection of [0, 2^63) keyed by the seed, so ids are unique within a run and
 * unrelated between seeds. */
int64_t gen_row_id(uint64_t seed, int64_t i);

#define GEN_TITLE_MAX 160
#define GEN_TEXT_MAX  640
#define GEN_TAGS_MAX  4
#define GEN_TAG_MAX   24

/* Row i's metadata (ASCII text, bounded sizes). */
struct gen_meta {
    int64_t id;
    char title[GEN_TITLE_MAX];
    size_t title_len;
    char context_text[GEN_TEXT_MAX];
    size_t context_len;
    char solution_text[GEN_TEXT_MAX];
    size_t solution_len;
    const char *tags[GEN_TAGS_MAX]; /* static strings */
    size_t tag_lens[GEN_TAGS_MAX];
    int ntags;
    int64_t created_at_us; /* microseconds since 2000-01-01 00:00:00 UTC */
};

void gen_row_meta(const struct gen_params *p, int64_t i, struct gen_meta *m);

/* The DSN with its password (URI user:password@, URI ?password=, key=value password=...,
 * likewise sslpassword) replaced by "***". Returns new (caller frees); NULL when out of memory. */
char *gen_mask_dsn(const char *dsn);

#endif
