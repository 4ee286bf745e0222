/* See redistest.h. */
#include "redistest.h"
#include "freeport.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

static int shared_port; /* picked free at the first call */

int redistest_ping(int port, long timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static void show_log(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        fputs(line, stderr);
    if (f)
        fclose(f);
}

pid_t redistest_spawn(const char *dir, int port)
{
    char sport[16], log[1024];
    snprintf(sport, sizeof sport, "%d", port);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "redistest: mkdir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    snprintf(log, sizeof log, "%s/server-%d.log", dir, port);
    if (redistest_ping(port, 200)) {
        fprintf(stderr, "redistest: something already answers on port %d\n", port);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "redistest: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", sport, "--dir",
               dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", log,
               (char *)NULL);
        fprintf(stderr, "redistest: exec redis-server: %s (apt-get install redis-server)\n",
                strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (redistest_ping(port, 200))
            return pid;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "redistest: redis-server on port %d exited:\n", port);
            show_log(log);
            return -1;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "redistest: redis-server on port %d did not answer within 10 s:\n", port);
    show_log(log);
    redistest_kill(pid);
    return -1;
}

void redistest_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid || (w < 0 && errno == ECHILD))
            return;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static pid_t shared_pid, shared_owner;
static char shared_dir[64], shared_url[64];

static void shared_stop(void)
{
    if (shared_pid > 0 && getpid() == shared_owner) {
        redistest_kill(shared_pid);
        shared_pid = 0;
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", shared_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "redistest: could not remove %s\n", shared_dir);
    }
}

const char *redistest_shared_url(void)
{
    if (shared_pid > 0)
        return shared_url;
    snprintf(shared_dir, sizeof shared_dir, "/tmp/mcpauth-redis-XXXXXX");
    if (!mkdtemp(shared_dir)) {
        perror("redistest: mkdtemp");
        return NULL;
    }
    if (!shared_port && !(shared_port = ts_free_port())) {
        perror("redistest: no free port");
        return NULL;
    }
    shared_pid = redistest_spawn(shared_dir, shared_port);
    if (shared_pid < 0) {
        shared_pid = 0;
        return NULL;
    }
    shared_owner = getpid();
    atexit(shared_stop);
    snprintf(shared_url, sizeof shared_url, "redis://127.0.0.1:%d/0", shared_port);
    return shared_url;
}

int redistest_port(int slot)
{
    static int ports[8];
    if (slot < 0 || slot >= 8)
        return 0;
    if (!ports[slot])
        ports[slot] = ts_free_port();
    return ports[slot];
}
