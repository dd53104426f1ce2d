/* The line in front of the handlers (issue 17): at most HTTP_MAX_RUNNING
 * authenticated requests run at once; the others wait in line, first come
 * first served. With a thread per connection, 256 busy connections are 256
 * runnable threads on a few CPUs, and the kernel's scheduler, not arrival
 * order, decides who goes next: the median stays low and the tail stretches
 * (p99 158 ms at 256 connections for a 25 ms median). In line, a request's
 * wait is about the requests ahead of it, so the tail follows the median, and
 * fewer runnable threads switch less.
 *
 * A request waits at most ADMIT_TIMEOUT_MS; then it is answered 503 with
 * Retry-After, as when no database connection frees up in time. Streams
 * (server-sent events, exports) leave the line when their handler returns. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "mb_admit.h"

enum { ADMIT_TIMEOUT_MS = 5000 };

typedef struct waiter {
    struct waiter *next;
    pthread_cond_t cv;
    bool granted;
} waiter;

static struct {
    pthread_mutex_t mu;
    int max, running;
    waiter *head, *tail;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_ullong waited, timed_out;

void mb_admit_init(int max_running)
{
    L.max = max_running;
}

static void unlink_waiter(waiter *w)
{
    waiter **pp = &L.head, *prev = NULL;
    while (*pp != NULL && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = w->next;
    if (L.tail == w)
        L.tail = prev;
}

bool mb_admit_enter(void)
{
    if (L.max <= 0)
        return true;
    pthread_mutex_lock(&L.mu);
    if (L.running < L.max && L.head == NULL) {
        L.running++;
        pthread_mutex_unlock(&L.mu);
        return true;
    }
    atomic_fetch_add(&waited, 1);
    waiter w = {.granted = false};
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (L.tail != NULL)
        L.tail->next = &w;
    else
        L.head = &w;
    L.tail = &w;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ADMIT_TIMEOUT_MS / 1000;
    while (!w.granted) {
        if (pthread_cond_timedwait(&w.cv, &L.mu, &deadline) == ETIMEDOUT && !w.granted) {
            unlink_waiter(&w);
            atomic_fetch_add(&timed_out, 1);
            break;
        }
    }
    pthread_mutex_unlock(&L.mu);
    pthread_cond_destroy(&w.cv);
    return w.granted;
}

void mb_admit_leave(void)
{
    if (L.max <= 0)
        return;
    pthread_mutex_lock(&L.mu);
    waiter *w = L.head;
    if (w != NULL) { /* the place goes to the head of the line: running stays the same */
        L.head = w->next;
        if (L.head == NULL)
            L.tail = NULL;
        w->granted = true;
        pthread_cond_signal(&w->cv);
    } else {
        L.running--;
    }
    pthread_mutex_unlock(&L.mu);
}

void mb_admit_stats(int *max, int *running, int *waiting, unsigned long long *n_waited,
                    unsigned long long *n_timed_out)
{
    pthread_mutex_lock(&L.mu);
    *max = L.max;
    *running = L.running;
    *waiting = 0;
    for (waiter *w = L.head; w != NULL; w = w->next)
        (*waiting)++;
    pthread_mutex_unlock(&L.mu);
    *n_waited = atomic_load(&waited);
    *n_timed_out = atomic_load(&timed_out);
}
