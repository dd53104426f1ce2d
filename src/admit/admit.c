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
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>

#include "mb_admit.h"

enum { ADMIT_TIMEOUT_MS = 5000 };

typedef struct waiter {
    struct waiter *next;
    sem_t sem; /* posted once, when granted, after the line's lock is released */
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

/* The hand-off. A place is granted under the lock and the waiter woken after it is released:
 * woken under the lock (a condition variable signalled while holding it), the waiter would at
 * once block again on the lock that its waker still held, two sleeps and two wake-ups per
 * place (at 32 connections the line cost a quarter of the warm list's rate, measured). The
 * waiter's semaphore lives on its stack, so it leaves only after taking the one post a grant
 * promises. */
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
    sem_init(&w.sem, 0, 0);
    if (L.tail != NULL)
        L.tail->next = &w;
    else
        L.head = &w;
    L.tail = &w;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ADMIT_TIMEOUT_MS / 1000;
    bool posted = false, late = false;
    while (!w.granted && !late) {
        pthread_mutex_unlock(&L.mu);
        if (sem_clockwait(&w.sem, CLOCK_MONOTONIC, &deadline) == 0)
            posted = true;
        else if (errno == ETIMEDOUT)
            late = true;
        pthread_mutex_lock(&L.mu);
    }
    if (!w.granted) {
        unlink_waiter(&w);
        atomic_fetch_add(&timed_out, 1);
    }
    bool granted = w.granted;
    pthread_mutex_unlock(&L.mu);
    while (granted && !posted) /* granted as the wait timed out: the post is on its way */
        posted = sem_wait(&w.sem) == 0;
    sem_destroy(&w.sem);
    return granted;
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
    } else {
        L.running--;
    }
    pthread_mutex_unlock(&L.mu);
    if (w != NULL)
        sem_post(&w->sem);
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
