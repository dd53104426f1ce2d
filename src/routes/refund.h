/* R10 in one place: the refund rule's facts and answer, the purchase locks
 * and the cancellation itself, shared by the immediate cancellation
 * (refund.c) and the cancellation requests (cancellation_requests.c). */
#ifndef MB_ROUTES_REFUND_H
#define MB_ROUTES_REFUND_H

#include "mb_http.h"

typedef struct {
    char status[16]; /* purchases.status */
    bool active;     /* active and inside its term */
    long long age;   /* seconds since purchased_at */
    bool software;   /* a software key of the purchase was handed out */
    char window_ends_at[48];
    char price[32]; /* the package's price and currency */
    char currency[8];
} mb_refund_facts;

/* Reads the facts of a purchase of the partner; answers 404 (or the store
 * error) and returns false. */
bool mb_refund_facts_read(mb_ctx *c, const char *partner_id, const char *purchase_id,
                          mb_refund_facts *f);
/* The reasons (codes) against a refund now; returns how many (0: refund). */
int mb_refund_facts_reasons(const mb_refund_facts *f, const char *reasons[3]);
/* 422 with every reason (`reasons`); code of the first one. */
void mb_reply_no_refund(mb_ctx *c, const char *const *reasons, int n, const char *window_ends_at,
                        const char *hint);

/* Locks the purchase, then its benefits in id order (as every writer does):
 * a key reveal or seat assignment in flight finishes first, later ones see
 * what this transaction commits. Answers 404 and returns false. */
bool mb_lock_purchase(mb_ctx *c, const char *partner_id, const char *purchase_id);
/* While a cancellation request of the purchase is pending, its keys, seats
 * and activations answer 409 cancellation-pending: answers that and returns
 * false; true when none is pending. */
bool mb_no_pending_cancellation(mb_ctx *c, const char *purchase_id);
/* The same check as a statement of a pipeline ($1 a benefit of the purchase; run it after the
 * benefit is locked, as a statement of its own), and its answer from the result. */
extern const char MB_PENDING_CANCELLATION_OF_BENEFIT_SQL[];
bool mb_no_pending_cancellation_in(mb_ctx *c, const PGresult *r);

/* Cancels a whole purchase (benefit_id NULL) or one benefit of it: pending
 * activations rejected, seats released, benefit(s) cancelled; a purchase gets
 * status cancelled and the refund (amount NULL: none). Writes a JSON summary
 * ({"benefits_cancelled":..,"seats_released":..,"activations_rejected":..})
 * into summary. */
mb_err mb_cancel_apply(mb_ctx *c, const char *purchase_id, const char *benefit_id,
                       const char *amount, const char *currency, char *summary, size_t n);

#endif
