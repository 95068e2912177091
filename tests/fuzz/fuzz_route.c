/* libFuzzer target: route matching of request paths (service/http.c), input = a path. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = malloc(size + 1);
    char id[HTTP_SEGMENT_SIZE];

    if (path == NULL)
        return 0;
    memcpy(path, data, size);
    path[size] = '\0';
    for (const struct http_route *r = routes_table; r->method; r++) {
        if (http_route_match(r->pattern, path, id) && strlen(id) >= HTTP_SEGMENT_SIZE)
            abort(); /* an id must always fit */
    }
    free(path);
    return 0;
}
