/*
 * tapi_qvec: turns a query string into a deterministic unit vector, standing in for an
 * embedding model. The algorithm is part of the contract (tests and other clients recompute
 * it), so here it is exactly:
 *
 *   seed  = FNV-1a 64 over the UTF-8 bytes of q
 *           (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
 *   state = xoshiro256** seeded with four successive splitmix64 outputs from seed
 *   u     = ((next() >> 11) + 0.5) * 2^-53            uniform in (0, 1), never 0 or 1
 *   pairs = Box-Muller on successive (u1, u2):
 *           r = sqrt(-2 ln u1); z[i] = r cos(2 pi u2); z[i+1] = r sin(2 pi u2)
 *           (an odd dim drops the last sin)
 *   v[i]  = (float)(z[i] / sqrt(sum z[j]^2))           in double, summed in index order
 *
 * The vector goes to PostgreSQL in pgvector's binary format (tapi_qvec_binary), so the server
 * sees the very floats computed here and nobody spends time printing and parsing 1536
 * decimals. The text form (tapi_qvec_format, %.9g, which also round-trips every float
 * exactly) is for the debug route and for people.
 */
#ifndef TAPI_QVEC_H
#define TAPI_QVEC_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a 64 of len bytes at q (borrowed). */
uint64_t tapi_qvec_seed(const char *q, size_t len);

/* Fills v[0..dim-1] (caller's array) with the unit vector for q (borrowed, len bytes). */
void tapi_qvec_make(const char *q, size_t len, int dim, float *v);

/* Bytes tapi_qvec_format needs for dim values, including the NUL. */
size_t tapi_qvec_text_size(int dim);

/* Writes v as pgvector text into buf (cap bytes, at least tapi_qvec_text_size(dim)).
 * Returns the length written, or -1 when cap is too small. */
int tapi_qvec_format(const float *v, int dim, char *buf, size_t cap);

/* Bytes tapi_qvec_binary writes for dim values. */
size_t tapi_qvec_binary_size(int dim);

/* Writes v in pgvector's binary input format (vector_recv): int16 dim, int16 0, then dim
 * float4, all big-endian, into buf (tapi_qvec_binary_size(dim) bytes). dim <= 16000. */
void tapi_qvec_binary(const float *v, int dim, char *buf);

#endif
