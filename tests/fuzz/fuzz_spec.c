/* libFuzzer target: spec decoding and validation of every kind (service/spec.c and the runners'
 * validators), the code that sees every POST /v1/runs body. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lt_util.h"
#include "spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *spec = NULL, *masked = NULL;
    const struct runner_ops *ops = NULL;
    struct lt_error err;

    lt_log_set_quiet(1);
    if (spec_parse((const char *)data, size, &spec, &masked, &ops, &err) == LT_OK) {
        /* A valid spec must survive what the service does next with it. */
        char *text = json_dumps(masked, JSON_COMPACT);
        free(text);
    }
    json_decref(spec);
    json_decref(masked);
    return 0;
}
