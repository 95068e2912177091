/*
 * tapi_qvec: the query-vector generator documented in tapi_qvec.h (FNV-1a -> splitmix64 ->
 * xoshiro256** -> Box-Muller -> L2 normalisation). Pure functions, no state between calls,
 * so any thread may call them.
 */
#define _GNU_SOURCE
#include "tapi_qvec.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

uint64_t tapi_qvec_seed(const char *q, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)q[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** 1.0 (Blackman and Vigna). */
static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static double uniform01(uint64_t s[4])
{
    return ((double)(xoshiro_next(s) >> 11) + 0.5) * 0x1.0p-53;
}

void tapi_qvec_make(const char *q, size_t len, int dim, float *v)
{
    const double two_pi = 6.283185307179586;
    uint64_t seed = tapi_qvec_seed(q, len);
    uint64_t s[4];
    double norm2 = 0.0, norm;

    for (int i = 0; i < 4; i++)
        s[i] = splitmix64(&seed);
    /* The gaussians are drawn twice from the same start state, once for the norm and once
     * for the values, so no double array the size of dim is needed (floats in v would round
     * before the division and break the documented formula). */
    uint64_t s2[4] = {s[0], s[1], s[2], s[3]};
    for (int i = 0; i < dim; i += 2) {
        double u1 = uniform01(s), u2 = uniform01(s);
        double r = sqrt(-2.0 * log(u1));
        double z0 = r * cos(two_pi * u2);
        norm2 += z0 * z0;
        if (i + 1 < dim) {
            double z1 = r * sin(two_pi * u2);
            norm2 += z1 * z1;
        }
    }
    norm = sqrt(norm2);
    for (int i = 0; i < dim; i += 2) {
        double u1 = uniform01(s2), u2 = uniform01(s2);
        double r = sqrt(-2.0 * log(u1));
        v[i] = (float)(r * cos(two_pi * u2) / norm);
        if (i + 1 < dim)
            v[i + 1] = (float)(r * sin(two_pi * u2) / norm);
    }
}

size_t tapi_qvec_text_size(int dim)
{
    /* "%.9g" of a float in [-1, 1] is at most 15 characters ("-1.23456789e-05"), plus a
     * comma each, the brackets and the NUL. */
    return (size_t)dim * 16 + 3;
}

int tapi_qvec_format(const float *v, int dim, char *buf, size_t cap)
{
    size_t n = 0;

    if (cap < tapi_qvec_text_size(dim))
        return -1;
    buf[n++] = '[';
    for (int i = 0; i < dim; i++) {
        int w = snprintf(buf + n, cap - n, i ? ",%.9g" : "%.9g", (double)v[i]);
        if (w < 0 || (size_t)w >= cap - n)
            return -1;
        n += (size_t)w;
    }
    if (n + 2 > cap)
        return -1;
    buf[n++] = ']';
    buf[n] = '\0';
    return (int)n;
}

size_t tapi_qvec_binary_size(int dim)
{
    return 4 + (size_t)dim * 4;
}

void tapi_qvec_binary(const float *v, int dim, char *buf)
{
    uint16_t head[2] = {htons((uint16_t)dim), 0};

    memcpy(buf, head, sizeof(head));
    for (int i = 0; i < dim; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof(bits));
        bits = htonl(bits);
        memcpy(buf + 4 + (size_t)i * 4, &bits, sizeof(bits));
    }
}
