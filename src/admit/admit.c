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
#include <pthread.h>
#include <stdatomic.h>

#include "mb_admit.h"
#include "mb_line.h"

enum { ADMIT_TIMEOUT_MS = 5000 };

static struct {
    pthread_mutex_t mu;
    int max, running;
    mb_line line;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_ullong waited, timed_out;

void mb_admit_init(int max_running)
{
    L.max = max_running;
}

bool mb_admit_enter(void)
{
    if (L.max <= 0)
        return true;
    pthread_mutex_lock(&L.mu);
    if (L.running < L.max && L.line.head == NULL) {
        L.running++;
        pthread_mutex_unlock(&L.mu);
        return true;
    }
    atomic_fetch_add(&waited, 1);
    mb_waiter w;
    int place;
    bool granted = mb_line_wait(&L.line, &L.mu, &w, ADMIT_TIMEOUT_MS, &place);
    pthread_mutex_unlock(&L.mu);
    mb_line_leave(&w);
    if (!granted)
        atomic_fetch_add(&timed_out, 1);
    return granted;
}

void mb_admit_leave(void)
{
    if (L.max <= 0)
        return;
    pthread_mutex_lock(&L.mu);
    /* the place goes to the head of the line: running stays the same */
    mb_waiter *w = mb_line_grant(&L.line, 1);
    if (w == NULL)
        L.running--;
    pthread_mutex_unlock(&L.mu);
    mb_line_post(w);
}

void mb_admit_stats(int *max, int *running, int *waiting, unsigned long long *n_waited,
                    unsigned long long *n_timed_out)
{
    pthread_mutex_lock(&L.mu);
    *max = L.max;
    *running = L.running;
    *waiting = L.line.n;
    pthread_mutex_unlock(&L.mu);
    *n_waited = atomic_load(&waited);
    *n_timed_out = atomic_load(&timed_out);
}
