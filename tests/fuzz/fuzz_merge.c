/* libFuzzer target: the JSON Merge Patch of preset overrides (service/presets.c), input = a JSON
 * array [target, patch]. Checks a property of RFC 7386 on every input: applying the same patch
 * twice gives what applying it once gives. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lt_util.h"
#include "presets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    json_t *once = NULL, *twice = NULL;

    lt_log_set_quiet(1);
    if (json_is_array(in) && json_array_size(in) == 2) {
        const json_t *patch = json_array_get(in, 1);
        once = presets_merge_patch(json_deep_copy(json_array_get(in, 0)), patch);
        twice = once ? presets_merge_patch(json_deep_copy(once), patch) : NULL;
        if (once && twice && !json_equal(once, twice))
            abort(); /* a merge patch is idempotent */
    }
    json_decref(twice);
    json_decref(once);
    json_decref(in);
    return 0;
}
