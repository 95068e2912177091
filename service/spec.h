/*
 * spec: the kind-independent half of run-spec validation — JSON decoding, the root object,
 * "kind", "name", "notify" — before the kind's own validator (runners/) checks the rest.
 */
#ifndef LT_SPEC_H
#define LT_SPEC_H

#include <jansson.h>
#include <stddef.h>

#include "lt_status.h"
#include "runner.h"

#define SPEC_NAME_MAX 200

/* Decodes and validates a posted spec. On LT_OK, *spec is the validated spec with defaults
 * filled and real secrets (new reference; caller owns), *masked a copy with secrets replaced by
 * "***" (new; caller owns) and *ops the kind's runner. On failure err names the field and
 * nothing is returned. */
lt_status spec_parse(const char *body, size_t len, json_t **spec, json_t **masked,
                     const struct runner_ops **ops, struct lt_error *err);

/* The placeholder answers show where a secret was hidden. */
#define SPEC_MASK "***"

/* Masks spec (borrowed, modified in place) for an answer: the kind's secrets (ops->mask_secrets;
 * ops may be NULL) and the notify member's webhook URL (notify_mask). The one masking function
 * of the service: run documents and presets both use it. */
void spec_mask(json_t *spec, const struct runner_ops *ops);

/* Refuses (LT_ERR_INVALID_SPEC naming the member) a validated spec (borrowed) that holds the
 * masked placeholder "***" where a secret goes (a credential header, a URL password, a DSN
 * password, the webhook URL's hidden parts): what a client gets back from GET and sends back
 * unchanged would otherwise be stored or used as the secret. "***" elsewhere is fine. */
lt_status spec_check_placeholders(const json_t *spec, const struct runner_ops *ops,
                                  struct lt_error *err);

#endif
