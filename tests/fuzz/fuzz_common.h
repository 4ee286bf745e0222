/* Shared pieces of the libFuzzer harnesses (tests/fuzz/README): a fixed
 * clock, scratch directories, a request built from fuzz bytes, a response
 * sink, and a stand-in for outgoing HTTP. */
#ifndef MCPAUTH_FUZZ_COMMON_H
#define MCPAUTH_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <mcpauth/config.h>
#include <mcpauth/http.h>

#include "fetch.h"

/* The clock every harness sees: time() is defined in fuzz_common.c and,
 * being part of the program, is what the library's time(NULL) calls
 * resolve to.  The public API takes no clock, so this is how a token's
 * exp/nbf/iat meet the same "now" on every run.  2026-01-01T00:00:00Z. */
#define FZ_NOW ((time_t)1767225600)

/* A directory under /dev/shm (tmpfs: SQLite and shm files cost no disk
 * I/O), removed at exit.  Aborts on failure. */
const char *fz_scratch(const char *name);
/* Writes text to dir/name and returns the path (static storage per call
 * site is the caller's job: the result is malloc'd). */
char *fz_write(const char *dir, const char *name, const char *text);
/* Parses a configuration or aborts with the reason. */
mcpauth_config *fz_config(const char *text);

/* A request from fuzz bytes:
 *   line 1:  METHOD SP REQUEST_URI
 *   then:    Name: value      (until an empty line)
 *   then:    the body
 * "Content-Type" and "Content-Length" become CONTENT_TYPE/CONTENT_LENGTH,
 * other names with a '-' or a lower-case letter HTTP_NAME (upper-cased,
 * '-' to '_'), names already in CGI form (REMOTE_USER, QUERY_STRING) stay.
 * Parameters of the input win over the defaults given to fz_req_init. */
#define FZ_REQ_MAX_PARAMS 48
typedef struct fz_req {
    char *buf;                      /* owned copy of the input, split in place */
    const char *name[FZ_REQ_MAX_PARAMS], *value[FZ_REQ_MAX_PARAMS];
    char namebuf[FZ_REQ_MAX_PARAMS][64];
    size_t n;
    const char *const *defaults;    /* name, value, ..., NULL */
    const char *body;
    size_t blen, pos;
    char out[8192];                 /* the start of what was written */
    size_t outlen;
    mcpauth_request req;
    mcpauth_response resp;
    int init_rc;
} fz_req;

/* Fills r from data; returns mcpauth_request_init's result (0, -1, -2).
 * Free with fz_req_free. */
int fz_req_init(fz_req *r, const uint8_t *data, size_t size, const char *const *defaults);
void fz_req_free(fz_req *r);

/* Splits data at the first '\n' into a NUL-terminated head (malloc'd,
 * returned) and rest, restlen (pointing into data). */
char *fz_line(const uint8_t *data, size_t size, const uint8_t **rest, size_t *restlen);
/* A NUL-terminated malloc'd copy of data. */
char *fz_strndup(const uint8_t *data, size_t size);

/* Outgoing HTTP: every harness links with -Wl,--wrap=mcpauth__fetch, so no
 * fuzz input ever reaches the network.  When fz_fetch_body is set the
 * stand-in answers with it (status fz_fetch_status, max_age
 * fz_fetch_max_age); otherwise it fails as an unreachable host would. */
extern const char *fz_fetch_body;
extern size_t fz_fetch_len;
extern long fz_fetch_status;
extern long fz_fetch_max_age;
extern unsigned long fz_fetch_calls;

/* The validator fixture: a configuration with one JWT issuer whose keys
 * (ES256 "es1", RS256 "rs1", made once per process) are in a JWKS file,
 * one issuer with introspection only, one resource FZ_RES with a backend
 * behind a Unix socket that does not exist, a policy; no cache, so every
 * input is validated in full.  extra (may be NULL) is appended to the
 * configuration.  Made on first call, kept for the process. */
#define FZ_ISS "https://as.example"
#define FZ_ISS_OPAQUE "https://opaque.example"
#define FZ_RES "https://mcp.example/mcp"

#include <mcpauth/validate.h>
#include "../support/tokens.h"

typedef struct fz_fixture {
    const char *dir;
    mcpauth_config *cfg;
    mcpauth_validator *v;
    const mcpauth_resource *res;
    tk_key *es, *rs;
    char *good_token;  /* ES256, valid for FZ_RES with every scope, until FZ_NOW + 1 h */
} fz_fixture;

fz_fixture *fz_fixture_get(const char *extra);

#endif
