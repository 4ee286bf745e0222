/* See clock.h. */
#include "config.h"

#include <stdatomic.h>

#include "clock.h"

/* lock-free: request threads never queue on the clock */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

static atomic_llong high;   /* the largest value returned so far */
static atomic_long offset;  /* tests only: added to the wall clock */

time_t mcpauth__now(void)
{
    long long t = (long long)time(NULL) + atomic_load_explicit(&offset, memory_order_relaxed);
    long long h = atomic_load_explicit(&high, memory_order_relaxed);
    while (t > h)
        if (atomic_compare_exchange_weak_explicit(&high, &h, t, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (time_t)t;
    return (time_t)h; /* the wall clock is behind what we have seen */
}

void mcpauth__clock_set_offset_for_test(long seconds)
{
    atomic_store(&offset, seconds);
}

void mcpauth__clock_reset_for_test(void)
{
    atomic_store(&high, 0);
}
