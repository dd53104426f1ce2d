/* Rules that need no HTTP and no SQL: the role matrix (DESIGN §2), input
 * validation, cursors and the refund rule. */
#ifndef MB_DOMAIN_H
#define MB_DOMAIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "mb_err.h"

/* The actions of the role matrix, one row each. */
typedef enum {
    MB_ACT_READ,          /* membership, catalog, own benefits and purchases */
    MB_ACT_PURCHASE,      /* purchase / renew a package (R2) */
    MB_ACT_KEYS,          /* get keys, activate software/cloud, self-assign (R4-R6) */
    MB_ACT_ASSIGN_OTHERS, /* assign / remove seats for other users (R2, R7) */
    MB_ACT_TECHNICAL,     /* technical benefits: view, activate, support (R8) */
    MB_ACT_MARKETING,     /* marketing contact, Go-To-Market offers (R9) */
    MB_ACT_CANCEL,        /* request cancellation (R10) */
    MB_ACT_MANAGE_USERS,  /* manage users and their roles (R11) */
    MB_ACT_AUDIT,         /* audit trail of the partner */
    MB_ACT_OPERATE,       /* process activations, catalog, key pools */
    MB_ACT__COUNT
} mb_action;

/* Role bits (mb_auth.h) that may perform an action. */
unsigned mb_action_roles(mb_action a);
bool mb_roles_allow(unsigned roles, mb_action a);
/* Human text for a 403 detail: who may do it, and whom to ask. */
const char *mb_action_denied_detail(mb_action a);

/* Validation of JSON request bodies: each check fills err with the field and
 * the reason on failure. */
typedef struct {
    char field[64];
    char message[160];
} mb_verr;

bool mb_is_uuid(const char *s);
bool mb_is_email(const char *s);
bool mb_is_phone(const char *s);
bool mb_is_lang_tag(const char *s);

/* Rejects any member of obj not in names (NULL-terminated). */
bool mb_v_known(const json_t *obj, const char *const *names, mb_verr *e);
/* String of min..max UTF-8 bytes (no NUL); *out NULL when absent and optional. */
bool mb_v_str(const json_t *obj, const char *name, bool required, size_t min, size_t max,
              const char **out, mb_verr *e);
bool mb_v_uuid(const json_t *obj, const char *name, bool required, const char **out, mb_verr *e);
bool mb_v_email(const json_t *obj, const char *name, bool required, const char **out, mb_verr *e);
bool mb_v_enum(const json_t *obj, const char *name, bool required, const char *const *allowed,
               const char **out, mb_verr *e);
bool mb_v_int(const json_t *obj, const char *name, bool required, long long min, long long max,
              long long *out, bool *present, mb_verr *e);
bool mb_v_bool(const json_t *obj, const char *name, bool required, bool *out, bool *present,
               mb_verr *e);

/* Query values. */
bool mb_parse_limit(const char *s, int *out); /* NULL -> 50; 1..200 */

/* Opaque cursors: base64url of a short ASCII key. */
bool mb_cursor_encode(const char *key, char *out, size_t outlen);
bool mb_cursor_decode(const char *cursor, char *out, size_t outlen);

/* R10: refund is possible within 30 days of purchase when no software benefit
 * was activated. Fills reasons (codes) and returns how many. */
int mb_refund_reasons(long long seconds_since_purchase, bool software_activated, bool active,
                      const char *reasons[3]);

#endif
