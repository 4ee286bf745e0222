/* A loopback TCP port nothing listens on right now, for a private server a
 * test starts (PostgreSQL, Redis): the kernel picks it, so tests of several
 * build trees, or a test and CI, can run on one machine at once.  A port
 * taken between this call and the server's bind makes that server fail to
 * start, loudly; it is never shared.  0 on error. */
#ifndef MCPAUTH_TEST_FREEPORT_H
#define MCPAUTH_TEST_FREEPORT_H

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int ts_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

#endif
