/* The wall clock for expiry decisions (not installed).  A clock set back
 * (NTP stepping, an admin, a VM restored from a snapshot) must not revive
 * what this process has already seen expire: an authorization code, a
 * consent form, a cached validation, an access token.  So mcpauth__now()
 * never goes backwards within a process: it returns the wall clock, or the
 * largest value it returned before when the wall clock is behind that.
 *
 * Scope: per process.  A process started after the clock was set back (a
 * restart, or a new FastCGI process the web server spawns) knows nothing of
 * the later time and uses the wall clock as it is; expiries stored by the
 * authorization server (codes, refresh tokens) are absolute times, so such
 * a process may accept what expired before the jump until the clock catches
 * up.  A clock set forward by mistake and then back holds this process at
 * the later time until the wall clock catches up (things expire early,
 * never late). */
#ifndef MCPAUTH_CLOCK_H
#define MCPAUTH_CLOCK_H

#include <time.h>

/* Seconds since the epoch: time(NULL), but never less than a value this
 * process returned before.  Lock-free and safe from any thread. */
time_t mcpauth__now(void);

/* For tests only (no program calls these): shift the wall clock that
 * mcpauth__now reads by seconds (negative: back), as a clock set by hand
 * would; and forget the largest value returned, as a fresh process would
 * (a new test case). */
void mcpauth__clock_set_offset_for_test(long seconds);
void mcpauth__clock_reset_for_test(void);

#endif
