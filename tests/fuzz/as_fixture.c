/* See fuzz_as.h. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <mcpauth/log.h>

#include "../../lib/as/as_priv.h"
#include "fuzz_as.h"
#include "keys.h"
#include "store.h"

static const char conf[] =
    "log_level = error\n"
    "runtime_dir = %s\n"
    "[resource mcp]\n"
    "uri = " FZ_RES "\n"
    "authorization_servers = " FZ_AS_ISS "\n"
    "scopes_supported = mcp:use mcp:admin\n"
    "scopes_required = mcp:use\n"
    "[authorization_server]\n"
    "issuer = " FZ_AS_ISS "\n"
    "state_dir = %s\n"
    "registration = yes\n"
    "registration_limit = 100000\n"
    "client_id_metadata_documents = yes\n"
    "consent_remember = yes\n"
    "introspection_client_id = gate\n"
    "introspection_client_secret = gate-secret\n";

static const char cimd_doc[] =
    "{\"client_id\":\"" FZ_AS_CIMD_ID "\",\"client_name\":\"App\","
    "\"redirect_uris\":[\"https://app.example/cb\",\"http://127.0.0.1/cb\"]}";

static void add_client(mcpauth_store *s, const char *id, const char *method, const char *secret)
{
    mcpauth_client c = {(char *)id, "Fuzz app",
                        "[\"https://app.example/cb\",\"http://127.0.0.1/cb\"]",
                        "authorization_code refresh_token", (char *)method, NULL, "dcr",
                        "192.0.2.1", FZ_NOW, 0};
    if (mcpauth__store_client_add(s, &c, secret) < 0)
        abort();
}

fz_as *fz_as_get(void)
{
    static fz_as a;
    if (a.as)
        return &a;
    mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
    a.dir = fz_scratch("as");
    char state[256], path[300], err[512] = "";
    snprintf(state, sizeof state, "%s/state", a.dir);
    if (mkdir(state, 0700) < 0)
        abort();
    mcpauth_store *s = mcpauth__store_open(state, NULL, err, sizeof err);
    if (!s) {
        fprintf(stderr, "fuzz: store: %s\n", err);
        abort();
    }
    unsigned char secret[32];
    snprintf(path, sizeof path, "%s/secret", state);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || RAND_bytes(secret, sizeof secret) != 1 ||
        write(fd, secret, sizeof secret) != (ssize_t)sizeof secret)
        abort();
    close(fd);
    char kid[128];
    if (mcpauth__keys_generate(s, state, "ES256", FZ_NOW, kid, sizeof kid, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz: keys: %s\n", err);
        abort();
    }
    add_client(s, FZ_AS_CONF_ID, "client_secret_basic", FZ_AS_CONF_SECRET);
    add_client(s, FZ_AS_PUB_ID, "none", NULL);
    mcpauth__store_close(s);
    char text[2048];
    snprintf(text, sizeof text, conf, a.dir, state);
    a.cfg = fz_config(text);
    if (!(a.as = mcpauth_as_new(a.cfg, err, sizeof err))) {
        fprintf(stderr, "fuzz: mcpauth_as_new: %s\n", err);
        abort();
    }
    /* the only document the fetch stand-in serves */
    fz_fetch_body = cimd_doc;
    fz_fetch_len = sizeof cimd_doc - 1;
    fz_fetch_status = 200;
    fz_fetch_max_age = 60;
    return &a;
}
