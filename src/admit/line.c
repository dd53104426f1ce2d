/* The hand-off of src/admit/ and src/store/pool.c (include/mb_line.h). A value is granted
 * under the caller's lock and the waiter woken after that lock is released. Woken under the
 * lock (a condition variable signalled while holding it), the waiter would at once block
 * again on the lock its waker still held: two sleeps and two wake-ups per hand-off. At 32
 * connections that cost the warm list 12 % of its rate (README, Performance). A grant
 * promises exactly one post; the waiter's semaphore is on its stack, so it leaves only once
 * it has taken that post. */
#include <errno.h>

#include "mb_line.h"

static void unlink_waiter(mb_line *l, mb_waiter *w)
{
    mb_waiter **pp = &l->head, *prev = NULL;
    while (*pp != NULL && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = w->next;
    if (l->tail == w)
        l->tail = prev;
    l->n--;
}

bool mb_line_wait(mb_line *l, pthread_mutex_t *mu, mb_waiter *w, int timeout_ms, int *value)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    *w = (mb_waiter){.value = -1};
    sem_init(&w->sem, 0, 0);
    if (l->tail != NULL)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    l->n++;
    bool late = false;
    while (!w->granted && !late) {
        pthread_mutex_unlock(mu);
        if (sem_clockwait(&w->sem, CLOCK_MONOTONIC, &deadline) == 0)
            w->posted = true;
        else if (errno == ETIMEDOUT)
            late = true;
        pthread_mutex_lock(mu);
    }
    if (!w->granted)
        unlink_waiter(l, w);
    *value = w->value;
    return w->granted;
}

void mb_line_leave(mb_waiter *w)
{
    while (w->granted && !w->posted) /* granted as the wait timed out: the post is coming */
        w->posted = sem_wait(&w->sem) == 0;
    sem_destroy(&w->sem);
}

mb_waiter *mb_line_grant(mb_line *l, int value)
{
    mb_waiter *w = l->head;
    if (w == NULL)
        return NULL;
    l->head = w->next;
    if (l->head == NULL)
        l->tail = NULL;
    l->n--;
    w->value = value;
    w->granted = true;
    return w;
}

void mb_line_post(mb_waiter *w)
{
    if (w != NULL)
        sem_post(&w->sem);
}
