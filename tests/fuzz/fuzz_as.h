/* The AS fixture of fuzz_as.c and fuzz_register.c (as_fixture.c). */
#ifndef MCPAUTH_FUZZ_AS_H
#define MCPAUTH_FUZZ_AS_H

#include <mcpauth/as.h>

#include "fuzz_common.h"

#define FZ_AS_ISS "https://as.example"
#define FZ_AS_PATH "/oauth2"
/* registered clients: confidential (client_secret_basic) and public */
#define FZ_AS_CONF_ID "conf-client"
#define FZ_AS_CONF_SECRET "conf-secret"
#define FZ_AS_PUB_ID "pub-client"
/* a client ID metadata document the fetch stand-in serves */
#define FZ_AS_CIMD_ID "https://app.example/client.json"

typedef struct fz_as {
    const char *dir;
    mcpauth_config *cfg;
    mcpauth_as *as;
} fz_as;

/* What `mcpauth init` does, the two clients, then the AS; made once. */
fz_as *fz_as_get(void);

#endif
