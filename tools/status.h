/* `mcpauth status` (tools/status.c). */
#ifndef MCPAUTH_TOOLS_STATUS_H
#define MCPAUTH_TOOLS_STATUS_H

#include "site.h"

/* The live figures of metrics.shm for a person, the versions of the
 * programs counting, the configuration file, and the signing keys. */
int cmd_status(ctx *c);
/* The keys part (in tools/mcpauth.c, beside the store helpers): ages and
 * the next expiry; 0, or -1 when the store cannot be read. */
int status_keys(ctx *c);

#endif
