/* Process lifecycle of the FastCGI programs (not installed).  lib/fcgi.c
 * owns it; other library files may ask whether the program is stopping,
 * e.g. to log a stream it ends as "shutdown" rather than "client_gone". */
#ifndef MCPAUTH_LIFECYCLE_H
#define MCPAUTH_LIFECYCLE_H

/* Everything a stopping program still does ends within this many seconds:
 * then it exits, whatever is left (see mcpauth-gate(8), SIGNALS). */
#define MCPAUTH_STOP_BOUND_S 10

/* 1 once the program has been told to stop (SIGTERM, SIGINT, SIGQUIT,
 * SIGUSR1, its web server gone, its listening socket closed); 0 before,
 * and always 0 outside mcpauth_fcgi_main (tests, CGI mode). */
int mcpauth__stopping(void);

#endif
