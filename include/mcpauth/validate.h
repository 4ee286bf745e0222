/* Bearer token validation: the decision the gate and the proxy share.
 *
 * A validator is built once per process from the configuration (local key
 * files are read then; remote keys are fetched on first use and refreshed
 * as their Cache-Control allows) and is safe to use from many threads. */
#ifndef MCPAUTH_VALIDATE_H
#define MCPAUTH_VALIDATE_H

#include <mcpauth/config.h>
#include <mcpauth/http.h>

/* Who is calling, from a valid token.  Longer claims are refused. */
typedef struct mcpauth_identity {
    char subject[256];
    char client_id[256];
    char issuer[512];
    char scope[2048];   /* space separated */
    long long exp;      /* expiry, seconds since the epoch */
} mcpauth_identity;

typedef enum {
    MCPAUTH_ALLOW = 0,
    MCPAUTH_NO_TOKEN,           /* 401, challenge without error code */
    MCPAUTH_BAD_REQUEST,        /* 400 invalid_request */
    MCPAUTH_INVALID_TOKEN,      /* 401 invalid_token */
    MCPAUTH_INSUFFICIENT_SCOPE, /* 403 insufficient_scope */
    MCPAUTH_UNAVAILABLE         /* 503: keys or introspection unreachable */
} mcpauth_verdict;

/* Why a request was refused, as a code set where the verdict is: for
 * metrics and logs, which must not depend on the wording of description.
 * Values and names are stable (names are the reason label of
 * mcpauth_refusals_total); new codes may be added before
 * MCPAUTH_REFUSAL_COUNT. */
typedef enum {
    MCPAUTH_REFUSAL_NONE = 0,       /* ALLOW */
    MCPAUTH_REFUSAL_NO_TOKEN,       /* no Bearer credentials */
    MCPAUTH_REFUSAL_BAD_REQUEST,    /* token in the query, malformed header */
    MCPAUTH_REFUSAL_MALFORMED,      /* not a token we can read, or a bad claim */
    MCPAUTH_REFUSAL_EXPIRED,
    MCPAUTH_REFUSAL_NOT_YET_VALID,  /* nbf or iat in the future */
    MCPAUTH_REFUSAL_AUDIENCE,       /* not for this resource */
    MCPAUTH_REFUSAL_ISSUER,         /* no or another issuer */
    MCPAUTH_REFUSAL_ALGORITHM,      /* alg not accepted */
    MCPAUTH_REFUSAL_UNKNOWN_KEY,    /* no key of the issuer matches */
    MCPAUTH_REFUSAL_SIGNATURE,
    MCPAUTH_REFUSAL_REVOKED,        /* in the built-in AS's revocation list */
    MCPAUTH_REFUSAL_INACTIVE,       /* introspection: not active */
    MCPAUTH_REFUSAL_SCOPE,          /* INSUFFICIENT_SCOPE */
    MCPAUTH_REFUSAL_UNAVAILABLE,    /* UNAVAILABLE: keys, introspection, revocations */
    MCPAUTH_REFUSAL_OTHER,          /* none of the above */
    MCPAUTH_REFUSAL_COUNT
} mcpauth_refusal;

/* The stable name of r ("expired", "no_token", ...; "none" for
 * MCPAUTH_REFUSAL_NONE, "other" for a value out of range): a static
 * string, never freed. */
const char *mcpauth_refusal_name(mcpauth_refusal r);

typedef struct mcpauth_decision {
    mcpauth_verdict verdict;
    mcpauth_refusal refusal; /* NONE when verdict is ALLOW, else why */
    char description[160];  /* for the client: never the token or key material */
    char scope_needed[1024];/* every scope the request needs, space separated */
    char token_hash[9];     /* first 8 hex digits of SHA-256(token), for logs */
    int cached;             /* 1 when the answer came from the cache */
    mcpauth_identity id;    /* filled when verdict is ALLOW or INSUFFICIENT_SCOPE */
} mcpauth_decision;

typedef struct mcpauth_validator mcpauth_validator;

/* NULL with a reason in err when a key file cannot be used. cfg must
 * outlive the validator. */
mcpauth_validator *mcpauth_validator_new(const mcpauth_config *cfg, char *err, size_t errlen);
/* Checks what mcpauth_validator_new would (the key files) without
 * building a validator that serves: opens nothing in runtime_dir (no
 * shared cache, no revocation list), so a check run by another user
 * (--check, Apache's parent as root) neither creates files there nor logs
 * about files it may not read.  0, or -1 with the reason in err. */
int mcpauth_validator_check(const mcpauth_config *cfg, char *err, size_t errlen);
void mcpauth_validator_free(mcpauth_validator *v);

/* Checks one token for one resource; extra_scopes (NULL or a list) are
 * needed on top of the resource's and the method's (method may be NULL). */
void mcpauth_validate_token(mcpauth_validator *v, const mcpauth_resource *res, const char *token,
                            size_t len, const char *method, const mcpauth_strlist *extra_scopes,
                            mcpauth_decision *d);

/* The whole request: extracts the token (Authorization: Bearer only; a
 * token in the query string, a second token or a malformed header is a
 * 400), validates it, and logs one security line for every refusal. */
void mcpauth_validate_request(mcpauth_validator *v, const mcpauth_resource *res,
                              const mcpauth_request *req, const mcpauth_strlist *extra_scopes,
                              mcpauth_decision *d);

/* For a decision that was ALLOW: requires extra_scopes on top of what was
 * checked (the proxy's policies, known once the body is read) without
 * validating the token again; a refusal is logged as above. */
void mcpauth_validate_scopes(const mcpauth_resource *res, const mcpauth_request *req,
                             const mcpauth_strlist *extra_scopes, mcpauth_decision *d);

/* Writes the refusal: status, WWW-Authenticate (resource_metadata always,
 * scope when any is needed, error and error_description when there is an
 * error), JSON body.  Only for verdicts other than ALLOW. */
void mcpauth_decision_respond(const mcpauth_decision *d, const mcpauth_resource *res,
                              mcpauth_response *resp);

/* HTTP status of a verdict. */
int mcpauth_verdict_status(mcpauth_verdict v);

#endif
