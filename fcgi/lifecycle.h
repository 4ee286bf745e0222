/* Process lifecycle of the FastCGI programs (not installed), owned by the
 * binding (binding.c).  The library never asks: the request's alive
 * callback answers -1 ("stopping") when the binding cuts an exchange. */
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
