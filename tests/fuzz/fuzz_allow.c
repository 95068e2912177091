/* libFuzzer target: the target allowlist (common/lt_allow.c). The input's first line is an
 * allowlist entry, the second a host checked against it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_allow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    char err[256];
    struct lt_allow *a = lt_allow_new_default();

    if (buf == NULL || a == NULL)
        goto out;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *nl = strchr(buf, '\n');
    char *host = nl ? nl + 1 : buf;
    if (nl)
        *nl = '\0';
    lt_allow_add(a, buf, err, sizeof(err));
    lt_allow_host(a, host, 80);
    lt_allow_name_matched(a, host, 443);
out:
    lt_allow_free(a);
    free(buf);
    return 0;
}
