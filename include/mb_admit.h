/* The first-come-first-served line in front of the handlers (src/admit/admit.c). */
#ifndef MB_ADMIT_H
#define MB_ADMIT_H

#include <stdbool.h>

void mb_admit_init(int max_running); /* HTTP_MAX_RUNNING; 0: no line */
/* Waits for a place; false after ADMIT_TIMEOUT_MS in line (answer 503). Every true is
 * followed by one mb_admit_leave. */
bool mb_admit_enter(void);
void mb_admit_leave(void);
void mb_admit_stats(int *max, int *running, int *waiting, unsigned long long *waited,
                    unsigned long long *timed_out);

#endif
