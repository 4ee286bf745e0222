/* Keys and tokens for bench/peers.sh, made at run time with OpenSSL
 * (through tests/support/tokens.c, the helper the tests mint with).
 *
 *   mint DIR ISSUER AUDIENCE_FILES AUDIENCE_MCP COUNT
 *
 * writes into DIR:
 *   jwks.json        the public keys (RSA 2048 "rs1", P-256 "ec1"), read by
 *                    every contender
 *   rs256-one        one RS256 token for AUDIENCE_FILES
 *   rs256-many       COUNT distinct RS256 tokens (one subject each)
 *   es256-many       COUNT distinct ES256 tokens
 *   badsig-many      the COUNT RS256 tokens with one signature character
 *                    changed (distinct, so no cache of refusals helps)
 *   badsig-one       the first of them
 *   mcp-one          one RS256 token for AUDIENCE_MCP
 *   rs1.key          the RSA private key (PEM), for the certificate
 *                    mod_auth_openidc reads (OIDCOAuthVerifyCertFiles)
 * one token per line.  Tokens are RFC 9068 shaped (typ at+jwt, iss, aud,
 * sub, client_id, scope, iat, exp two hours ahead, jti). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../tests/support/tokens.h"

static char *token(const tk_key *k, const char *iss, const char *aud, long i)
{
    long now = (long)time(NULL);
    char header[128], *claims = NULL;
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", k->alg,
             k->kid);
    if (asprintf(&claims,
                 "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"user-%ld\",\"client_id\":\"bench\","
                 "\"scope\":\"files:read\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"%s-%ld-%ld\"}",
                 iss, aud, i, now - 5, now + 7200, k->kid, now, i) < 0)
        return NULL;
    char *t = tk_sign(k, header, claims);
    free(claims);
    return t;
}

static FILE *open_out(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    return f;
}

static void close_out(FILE *f)
{
    if (fclose(f) != 0) {
        perror("mint: write");
        exit(1);
    }
}

static void put(FILE *f, char *t)
{
    if (!t) {
        fprintf(stderr, "mint: signing failed\n");
        exit(1);
    }
    fprintf(f, "%s\n", t);
    free(t);
}

int main(int argc, char **argv)
{
    if (argc != 6 || atol(argv[5]) < 1) {
        fprintf(stderr, "usage: %s DIR ISSUER AUDIENCE_FILES AUDIENCE_MCP COUNT\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1], *iss = argv[2], *aud = argv[3], *aud_mcp = argv[4];
    long count = atol(argv[5]);
    tk_key *rs = tk_key_new("RS256", "rs1", 2048), *ec = tk_key_new("ES256", "ec1", 0);
    tk_key *keys[] = {rs, ec};
    char *jwks = tk_jwks(keys, 2);
    FILE *f = open_out(dir, "jwks.json");
    fputs(jwks, f);
    close_out(f);
    free(jwks);

    f = open_out(dir, "rs1.key");
    fputs(rs->private_pem, f);
    close_out(f);

    f = open_out(dir, "rs256-one");
    put(f, token(rs, iss, aud, 0));
    close_out(f);
    f = open_out(dir, "mcp-one");
    put(f, token(rs, iss, aud_mcp, 0));
    close_out(f);

    FILE *many = open_out(dir, "rs256-many"), *bad = open_out(dir, "badsig-many");
    FILE *bad1 = open_out(dir, "badsig-one");
    for (long i = 1; i <= count; i++) {
        char *t = token(rs, iss, aud, i);
        if (!t) {
            fprintf(stderr, "mint: signing failed\n");
            return 1;
        }
        fprintf(many, "%s\n", t);
        /* A character in the middle of the signature: every bit there is
         * signature (the last character may carry padding bits only). */
        char *sig = strrchr(t, '.') + 1;
        size_t mid = strlen(sig) / 2;
        sig[mid] = sig[mid] == 'A' ? 'B' : 'A';
        fprintf(bad, "%s\n", t);
        if (i == 1)
            fprintf(bad1, "%s\n", t);
        free(t);
    }
    close_out(many);
    close_out(bad);
    close_out(bad1);

    f = open_out(dir, "es256-many");
    for (long i = 1; i <= count; i++) {
        put(f, token(ec, iss, aud, i));
    }
    close_out(f);
    tk_key_free(rs);
    tk_key_free(ec);
    return 0;
}
