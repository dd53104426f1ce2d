/* One error type from store and domain up to the route, mapped to an HTTP
 * status and a stable problem `code` in one table. */
#ifndef MB_ERR_H
#define MB_ERR_H

/* X(name, http status, problem code, title) */
#define MB_ERR_MAP(X)                                                                              \
    X(UNAUTHENTICATED, 401, "unauthenticated", "Authentication required")                          \
    X(FORBIDDEN_ROLE, 403, "forbidden-role", "Your role does not allow this")                      \
    X(CORS_ORIGIN_REFUSED, 403, "cors-origin-refused", "Origin not allowed")                       \
    X(NOT_FOUND, 404, "not-found", "Not found")                                                    \
    X(METHOD_NOT_ALLOWED, 405, "method-not-allowed", "Method not allowed")                         \
    X(MEMBERSHIP_IN_PMC, 409, "membership-in-pmc", "Membership is managed in PMC")                 \
    X(ALREADY_PURCHASED, 409, "already-purchased", "Package already purchased")                    \
    X(CONFLICT, 409, "conflict", "Conflict")                                                       \
    X(KEY_POOL_EXHAUSTED, 409, "key-pool-exhausted", "No license keys left")                       \
    X(NO_SEATS, 409, "no-seats-available", "No seats available")                                   \
    X(ALREADY_ASSIGNED, 409, "already-assigned", "User already assigned")                          \
    X(CONTACT_REQUIRED, 409, "marketing-contact-required", "Marketing contact required")           \
    X(ACTIVATION_EXISTS, 409, "activation-exists", "Activation already requested")                 \
    X(BENEFIT_NOT_ACTIVE, 409, "benefit-not-active", "Benefit is not active")                      \
    X(BENEFIT_EXHAUSTED, 409, "benefit-exhausted", "Benefit used up")                              \
    X(BENEFIT_EXPIRED, 409, "benefit-expired", "Benefit expired or cancelled")                     \
    X(ALREADY_CANCELLED, 409, "already-cancelled", "Purchase already cancelled")                   \
    X(RENEWAL_NOT_OPEN, 409, "renewal-not-open", "Renewal not open yet")                           \
    X(PURCHASE_NOT_ACTIVE, 409, "purchase-not-active", "Purchase is not active")                   \
    X(NOT_PENDING, 409, "not-pending", "Activation is not pending")                                \
    X(CANCELLATION_PENDING, 409, "cancellation-pending", "A cancellation request is pending")      \
    X(PRECONDITION_FAILED, 412, "precondition-failed", "Precondition failed")                      \
    X(PAYLOAD_TOO_LARGE, 413, "payload-too-large", "Payload too large")                            \
    X(HEADERS_TOO_LARGE, 431, "headers-too-large", "Request headers too large")                    \
    X(UNSUPPORTED_MEDIA_TYPE, 415, "unsupported-media-type", "Unsupported media type")             \
    X(MALFORMED_JSON, 400, "malformed-json", "Malformed JSON")                                     \
    X(MALFORMED_HEADER, 400, "malformed-header", "Malformed header")                               \
    X(VALIDATION, 422, "validation-failed", "Validation failed")                                   \
    X(IDEMPOTENCY_KEY_REUSED, 422, "idempotency-key-reused", "Idempotency key reused")             \
    X(USER_NOT_IN_PARTNER, 422, "user-not-in-partner", "User not in partner")                      \
    X(NOT_ELIGIBLE, 422, "not-eligible", "Not eligible")                                           \
    X(CONTACT_EMAIL_CONFLICT, 422, "marketing-contact-email-conflict",                             \
      "Marketing contact email conflict")                                                          \
    X(REFUND_WINDOW_EXPIRED, 422, "refund-window-expired", "Refund window expired")                \
    X(SOFTWARE_ACTIVATED, 422, "software-benefits-activated", "Software benefits activated")       \
    X(BATCH_FAILED, 409, "batch-failed", "Batch not applied")                                      \
    X(RATE_LIMITED, 429, "rate-limited", "Too many requests")                                      \
    X(UNAVAILABLE, 503, "unavailable", "Service unavailable")                                      \
    X(INTERNAL, 500, "internal", "Internal error")

typedef enum {
    MB_OK = 0,
#define MB_ERR_ENUM(name, status, code, title) MB_E_##name,
    MB_ERR_MAP(MB_ERR_ENUM)
#undef MB_ERR_ENUM
        MB_E__COUNT
} mb_err;

int mb_err_status(mb_err e);
const char *mb_err_code(mb_err e);
const char *mb_err_title(mb_err e);

#endif
