/* A first-come-first-served line of threads waiting to be handed something: a place
 * (src/admit/admit.c) or a pooled connection (src/store/pool.c). The caller's own mutex
 * guards the line; the waiter itself lives on the waiting thread's stack. */
#ifndef MB_LINE_H
#define MB_LINE_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <time.h>

typedef struct mb_waiter {
    struct mb_waiter *next;
    sem_t sem;    /* posted once, by mb_line_post, after the grant */
    int value;    /* what was handed over */
    bool granted; /* under the caller's mutex */
    bool posted;  /* the owner took its post */
} mb_waiter;

typedef struct {
    mb_waiter *head, *tail;
    int n;
} mb_line;

/* With mu held: joins the end of the line and waits, mu released meanwhile, until a value is
 * granted (true, *value set) or timeout_ms pass (false, out of the line). Returns with mu
 * held; call mb_line_leave after releasing mu. */
bool mb_line_wait(mb_line *l, pthread_mutex_t *mu, mb_waiter *w, int timeout_ms, int *value);
/* Without the mutex, after mb_line_wait: takes a post still on its way, frees the waiter. */
void mb_line_leave(mb_waiter *w);
/* With the mutex held: hands value to the first in line and returns it (NULL: nobody waits).
 * Post it with mb_line_post once the mutex is released. */
mb_waiter *mb_line_grant(mb_line *l, int value);
void mb_line_post(mb_waiter *w);

#endif
