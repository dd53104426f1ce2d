/* Readiness from a check at most a second old: probes (load balancers, an
 * orchestrator, anyone on the internet) never cost more than one database
 * round trip a second, and never take a pool connection of their own while
 * one is being checked. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "mb_db.h"

static pthread_mutex_t checking = PTHREAD_MUTEX_INITIALIZER;
static _Atomic long long checked_at_ms = -1000000; /* monotonic */
static atomic_bool last_ok;
static atomic_ullong checks, checks_done;

unsigned long long mb_db_ready_checks(void)
{
    return atomic_load(&checks);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool mb_db_ready(void)
{
    if (now_ms() - atomic_load(&checked_at_ms) < 1000)
        return atomic_load(&last_ok);
    if (pthread_mutex_trylock(&checking) != 0) {
        if (atomic_load(&checks_done) > 0)
            return atomic_load(&last_ok); /* another request is checking right now */
        pthread_mutex_lock(&checking); /* no answer yet: wait for the first */
    }
    if (now_ms() - atomic_load(&checked_at_ms) >= 1000) {
        atomic_fetch_add(&checks, 1);
        atomic_store(&last_ok, mb_db_ping());
        atomic_store(&checked_at_ms, now_ms());
        atomic_fetch_add(&checks_done, 1);
    }
    pthread_mutex_unlock(&checking);
    return atomic_load(&last_ok);
}
