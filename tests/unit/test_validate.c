/* The validator: every acceptance path and every refusal of issue 3, with
 * keys and tokens made at test time (tests/support/tokens.c). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jwt.h>

#include <mcpauth/config.h>
#include <mcpauth/log.h>
#include <mcpauth/validate.h>

#include <openssl/sha.h>

#include "revoked.h"
#include "../support/httpd.h"
#include "../support/tokens.h"
#include "memhttp.h"
#include "suites.h"

#define ISS "https://as.example.com"
#define RES_A "https://mcp.example.com/a"
#define RES_B "https://mcp.example.com/b"

static tk_key *rsa, *ec, *ec384, *rsa_other, *ps;
static char dir[64];
static mcpauth_config *cfg;
static mcpauth_validator *val;
static const mcpauth_resource *A, *B;

static void keys_setup(void)
{
    rsa = tk_key_new("RS256", "rsa1", 0);
    ec = tk_key_new("ES256", "ec1", 0);
    ec384 = tk_key_new("ES384", "ec384", 0);
    ps = tk_key_new("PS256", "ps1", 0);
    rsa_other = tk_key_new("RS256", "rsa1", 0); /* same kid, not published */
    snprintf(dir, sizeof dir, "/tmp/mcpauth-val-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    tk_key *pub[] = {rsa, ec, ec384, ps};
    char *jwks = tk_jwks(pub, 4);
    char path[128];
    snprintf(path, sizeof path, "%s/jwks.json", dir);
    tk_write(path, jwks);
    free(jwks);
}

static void keys_teardown(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/jwks.json", dir);
    unlink(path);
    rmdir(dir);
    tk_key_free(rsa);
    tk_key_free(ec);
    tk_key_free(ec384);
    tk_key_free(ps);
    tk_key_free(rsa_other);
}

static void load(const char *extra_global, const char *extra_issuer)
{
    char text[4096], err[512] = "";
    snprintf(text, sizeof text,
             "%s\n"
             "[resource a]\nuri = " RES_A "\nauthorization_servers = " ISS "\n"
             "scopes_supported = read write admin\nscopes_required = read\n"
             "scopes_required_delete = admin\naudiences = legacy-client-id\n"
             "[resource b]\nuri = " RES_B "\nauthorization_servers = " ISS "\n"
             "[issuer local]\nissuer = " ISS "\njwks_file = %s/jwks.json\n%s\n",
             extra_global ? extra_global : "", dir, extra_issuer ? extra_issuer : "");
    cfg = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    val = mcpauth_validator_new(cfg, err, sizeof err);
    ck_assert_msg(val != NULL, "%s", err);
    A = mcpauth_config_resource_by_name(cfg, "a");
    B = mcpauth_config_resource_by_name(cfg, "b");
}

static void setup(void) { load("jwt_algorithms = RS256 ES256 PS256", NULL); }

static void teardown(void)
{
    mcpauth_validator_free(val);
    mcpauth_config_free(cfg);
}

/* Every description the validator gives, with the refusal code it must
 * come with: the reason label of mcpauth_refusals_total, as it was when
 * the label was still guessed from these words (dashboards depend on it).
 * A description missing here fails the test that meets it. */
static const struct {
    const char *why;
    mcpauth_refusal r;
} codes[] = {
    {"Bearer token required", MCPAUTH_REFUSAL_NO_TOKEN},
    {"access tokens are accepted only in the Authorization header", MCPAUTH_REFUSAL_BAD_REQUEST},
    {"malformed Authorization header (one Bearer token of RFC 6750 syntax expected)",
     MCPAUTH_REFUSAL_BAD_REQUEST},
    {"empty Bearer token", MCPAUTH_REFUSAL_BAD_REQUEST},
    {"token larger than 8192 bytes", MCPAUTH_REFUSAL_MALFORMED},
    {"malformed token", MCPAUTH_REFUSAL_MALFORMED},
    {"malformed token header", MCPAUTH_REFUSAL_MALFORMED},
    {"malformed token payload", MCPAUTH_REFUSAL_MALFORMED},
    {"malformed kid", MCPAUTH_REFUSAL_MALFORMED},
    {"malformed typ", MCPAUTH_REFUSAL_MALFORMED},
    {"token algorithm not accepted", MCPAUTH_REFUSAL_ALGORITHM},
    {"token has unsupported critical header parameters", MCPAUTH_REFUSAL_MALFORMED},
    {"token has no valid iss", MCPAUTH_REFUSAL_ISSUER},
    {"token issuer is not accepted for this resource", MCPAUTH_REFUSAL_ISSUER},
    {"token typ must be at+jwt", MCPAUTH_REFUSAL_MALFORMED},
    {"no key of the issuer matches the token (kid, alg)", MCPAUTH_REFUSAL_UNKNOWN_KEY},
    {"token signature is invalid", MCPAUTH_REFUSAL_SIGNATURE},
    {"an ID token is not an access token", MCPAUTH_REFUSAL_MALFORMED},
    {"token has no exp", MCPAUTH_REFUSAL_MALFORMED},
    {"exp is not a valid time", MCPAUTH_REFUSAL_MALFORMED},
    {"token expired", MCPAUTH_REFUSAL_EXPIRED},
    {"token not valid yet (nbf)", MCPAUTH_REFUSAL_NOT_YET_VALID},
    {"token issued in the future (iat)", MCPAUTH_REFUSAL_NOT_YET_VALID},
    {"token audience does not include this resource", MCPAUTH_REFUSAL_AUDIENCE},
    {"sub is not a valid string", MCPAUTH_REFUSAL_MALFORMED},
    {"client_id is not a valid string", MCPAUTH_REFUSAL_MALFORMED},
    {"azp is not a valid string", MCPAUTH_REFUSAL_MALFORMED},
    {"scope is not valid", MCPAUTH_REFUSAL_MALFORMED},
    {"token is not a JWT and no introspection is configured", MCPAUTH_REFUSAL_MALFORMED},
    {"token is not active", MCPAUTH_REFUSAL_INACTIVE},
    {"introspected token has another issuer", MCPAUTH_REFUSAL_ISSUER},
    {"signing keys of the issuer are unavailable", MCPAUTH_REFUSAL_UNAVAILABLE},
    {"signing keys of the issuer are being refreshed", MCPAUTH_REFUSAL_UNAVAILABLE},
    {"token introspection is unavailable", MCPAUTH_REFUSAL_UNAVAILABLE},
    {"token has been revoked", MCPAUTH_REFUSAL_REVOKED},
    {"the revocation list is unavailable", MCPAUTH_REFUSAL_UNAVAILABLE},
    {"token lacks a required scope", MCPAUTH_REFUSAL_SCOPE},
};

/* d's refusal code is the one of its description (NONE when allowed). */
static void check_code(const mcpauth_decision *d)
{
    if (d->verdict == MCPAUTH_ALLOW) {
        ck_assert_int_eq(d->refusal, MCPAUTH_REFUSAL_NONE);
        return;
    }
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(codes[i].why, d->description) == 0) {
            ck_assert_msg(d->refusal == codes[i].r, "\"%s\": refusal %s, want %s", d->description,
                          mcpauth_refusal_name(d->refusal), mcpauth_refusal_name(codes[i].r));
            return;
        }
    ck_abort_msg("\"%s\" (refusal %s) is not in the table of codes", d->description,
                 mcpauth_refusal_name(d->refusal));
}

static void check(const mcpauth_resource *res, const char *token, const char *method,
                  mcpauth_verdict want, const char *why, mcpauth_decision *d)
{
    ck_assert_msg(token != NULL, "token not minted");
    mcpauth_validate_token(val, res, token, strlen(token), method, NULL, d);
    ck_assert_msg(d->verdict == want, "verdict %d, want %d (%s)", d->verdict, want, d->description);
    if (why)
        ck_assert_str_eq(d->description, why);
    check_code(d);
}

static void expect(const char *token, mcpauth_verdict want, const char *why)
{
    mcpauth_decision d;
    check(A, token, "GET", want, why, &d);
}

/* ------------------------------------------------------------ acceptance */

START_TEST(accept_rs256)
{
    char *c = tk_claims(ISS, RES_A, "read write", 300);
    char *t = tk_mint(rsa, c, NULL);
    mcpauth_decision d;
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    ck_assert_str_eq(d.id.subject, "alice");
    ck_assert_str_eq(d.id.client_id, "app");
    ck_assert_str_eq(d.id.scope, "read write");
    ck_assert_str_eq(d.id.issuer, ISS);
    ck_assert_int_gt(d.id.exp, time(NULL));
    ck_assert_int_eq(strlen(d.token_hash), 8);
    free(c);
    free(t);
}
END_TEST

START_TEST(accept_es256_and_ps256)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(ec, c, NULL), *t2 = tk_mint(ps, c, NULL);
    expect(t, MCPAUTH_ALLOW, NULL);
    expect(t2, MCPAUTH_ALLOW, NULL);
    free(c);
    free(t);
    free(t2);
}
END_TEST

START_TEST(accept_audience_array_and_extra_audience)
{
    long now = time(NULL);
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":[\"https://other.example.com\",\"" RES_A "\"],"
             "\"sub\":\"bob\",\"azp\":\"cli\",\"scp\":[\"read\",\"write\"],\"exp\":%ld}", now + 60);
    char *t = tk_mint(rsa, claims, NULL);
    mcpauth_decision d;
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    ck_assert_str_eq(d.id.client_id, "cli"); /* azp when no client_id */
    ck_assert_str_eq(d.id.scope, "read write"); /* scp array */
    free(t);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"legacy-client-id\",\"sub\":\"bob\",\"scope\":\"read\","
             "\"exp\":%ld}", now + 60);
    t = tk_mint(rsa, claims, NULL);
    expect(t, MCPAUTH_ALLOW, NULL);
    free(t);
}
END_TEST

START_TEST(accept_without_kid_single_fitting_key)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(ec384, c, "{\"kid\":\"\"}");
    teardown();
    load("jwt_algorithms = ES384", NULL);
    expect(t, MCPAUTH_ALLOW, NULL);
    free(c);
    free(t);
}
END_TEST

START_TEST(accept_within_leeway)
{
    long now = time(NULL);
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"scope\":\"read\",\"exp\":%ld,"
             "\"nbf\":%ld,\"iat\":%ld}", now - 30, now + 30, now + 30);
    char *t = tk_mint(rsa, claims, NULL);
    expect(t, MCPAUTH_ALLOW, NULL); /* default leeway 60 s */
    free(t);
}
END_TEST

/* --------------------------------------------------- algorithm attacks */

START_TEST(refuse_alg_none)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint_unsafe("none", NULL, 0, c, NULL);
    expect(t, MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    free(t);
    /* also hand-made, with an empty signature and with a kid */
    t = tk_compose("{\"alg\":\"none\",\"kid\":\"rsa1\"}", c, "");
    expect(t, MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    free(t);
    t = tk_compose("{\"alg\":\"None\"}", c, "");
    expect(t, MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    free(t);
    free(c);
}
END_TEST

/* The key-confusion forgery: HS256 keyed with the RSA public key.  libjwt
 * 1.10's own jwt_decode() accepts it when handed that PEM (shown here, so
 * the test documents why the validator does not verify through libjwt);
 * the validator refuses it before touching any key. */
START_TEST(refuse_hmac_with_public_key)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint_unsafe("HS256", rsa->public_pem, strlen(rsa->public_pem), c,
                             "{\"kid\":\"rsa1\"}");
    ck_assert_ptr_nonnull(t);
    jwt_t *j = NULL;
    int lib_rc = jwt_decode(&j, t, (const unsigned char *)rsa->public_pem,
                            (int)strlen(rsa->public_pem));
    ck_assert_msg(lib_rc == 0, "libjwt refused the forgery (rc %d): the guard is still needed", lib_rc);
    jwt_free(j);
    expect(t, MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    free(t);
    t = tk_mint_unsafe("HS512", "secret", 6, c, NULL);
    expect(t, MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    free(t);
    free(c);
}
END_TEST

START_TEST(refuse_alg_not_in_allow_list)
{
    teardown();
    load(NULL, NULL); /* default RS256 ES256 */
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(ps, c, NULL);
    expect(t, MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    free(t);
    t = tk_mint(ec384, c, NULL);
    expect(t, MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    free(t);
    free(c);
}
END_TEST

START_TEST(refuse_alg_key_mismatch)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    /* ES256 signature, header pointing at the RSA key's kid */
    char *t = tk_mint(ec, c, "{\"kid\":\"rsa1\"}");
    expect(t, MCPAUTH_INVALID_TOKEN, "no key of the issuer matches the token (kid, alg)");
    free(t);
    /* RS256 header on the EC key's kid */
    t = tk_mint(rsa, c, "{\"kid\":\"ec1\"}");
    expect(t, MCPAUTH_INVALID_TOKEN, "no key of the issuer matches the token (kid, alg)");
    free(t);
    free(c);
}
END_TEST

START_TEST(refuse_unknown_kid_and_wrong_key)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(rsa, c, "{\"kid\":\"nope\"}");
    expect(t, MCPAUTH_INVALID_TOKEN, "no key of the issuer matches the token (kid, alg)");
    free(t);
    t = tk_mint(rsa_other, c, NULL); /* right kid, unpublished key */
    expect(t, MCPAUTH_INVALID_TOKEN, "token signature is invalid");
    free(t);
    free(c);
}
END_TEST

/* Keys named by the token itself are never used: an attacker's key in
 * jwk/jku/x5u/x5c changes nothing. */
START_TEST(refuse_embedded_key_headers)
{
    tk_key *evil = tk_key_new("RS256", "rsa1", 0);
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char hdr[4096];
    snprintf(hdr, sizeof hdr, "{\"jwk\":%s}", evil->jwk);
    char *t = tk_mint(evil, c, hdr);
    expect(t, MCPAUTH_INVALID_TOKEN, "token signature is invalid");
    free(t);
    t = tk_mint(evil, c, "{\"jku\":\"https://evil.example.com/jwks\",\"x5u\":\"https://evil.example.com/c\"}");
    expect(t, MCPAUTH_INVALID_TOKEN, "token signature is invalid");
    free(t);
    t = tk_mint(evil, c, "{\"x5c\":[\"MIIB\"]}");
    expect(t, MCPAUTH_INVALID_TOKEN, "token signature is invalid");
    free(t);
    free(c);
    tk_key_free(evil);
}
END_TEST

START_TEST(refuse_crit)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(rsa, c, "{\"crit\":[\"exp\"],\"exp\":1}");
    expect(t, MCPAUTH_INVALID_TOKEN, "token has unsupported critical header parameters");
    free(t);
    free(c);
}
END_TEST

/* --------------------------------------------------------- malformed */

START_TEST(refuse_malformed)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *good = tk_mint(rsa, c, NULL);
    const char *sig = strrchr(good, '.') + 1;
    char *t;
    expect("abc", MCPAUTH_INVALID_TOKEN, "token is not a JWT and no introspection is configured");
    expect("a.b", MCPAUTH_INVALID_TOKEN, "token is not a JWT and no introspection is configured");
    expect("a.b.c.d", MCPAUTH_INVALID_TOKEN, "token is not a JWT and no introspection is configured");
    expect("..", MCPAUTH_INVALID_TOKEN, "malformed token header");
    expect("e30.e30.", MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    /* bad base64url in the header */
    char bad[4096];
    snprintf(bad, sizeof bad, "eyJ+bGciOiJSUzI1NiJ9%s", strchr(good, '.'));
    expect(bad, MCPAUTH_INVALID_TOKEN, "malformed token header");
    /* padding is not base64url */
    snprintf(bad, sizeof bad, "%.*s=%s", (int)(strchr(good, '.') - good), good, strchr(good, '.'));
    expect(bad, MCPAUTH_INVALID_TOKEN, "malformed token header");
    t = tk_compose("not json", c, sig);
    expect(t, MCPAUTH_INVALID_TOKEN, "malformed token header");
    free(t);
    t = tk_compose("[\"alg\",\"RS256\"]", c, sig);
    expect(t, MCPAUTH_INVALID_TOKEN, "malformed token header");
    free(t);
    t = tk_compose("{\"alg\":\"RS256\",\"kid\":\"rsa1\"} trailing", c, sig);
    expect(t, MCPAUTH_INVALID_TOKEN, "malformed token header");
    free(t);
    t = tk_compose("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{\"iss\":1}garbage", sig);
    expect(t, MCPAUTH_INVALID_TOKEN, "malformed token payload");
    free(t);
    t = tk_compose("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "\"a string\"", sig);
    expect(t, MCPAUTH_INVALID_TOKEN, "malformed token payload");
    free(t);
    t = tk_compose("{\"alg\":\"RS256\",\"kid\":5}", c, sig);
    expect(t, MCPAUTH_INVALID_TOKEN, "malformed kid");
    free(t);
    /* deep nesting is refused by the parser's depth limit */
    char deep[512] = "{\"alg\":\"RS256\",\"x\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    t = tk_compose(deep, c, sig);
    expect(t, MCPAUTH_INVALID_TOKEN, "malformed token header");
    free(t);
    /* signature: bad base64url, and trailing garbage */
    snprintf(bad, sizeof bad, "%s!", good);
    expect(bad, MCPAUTH_INVALID_TOKEN, "token signature is invalid");
    snprintf(bad, sizeof bad, "%sAA", good);
    expect(bad, MCPAUTH_INVALID_TOKEN, "token signature is invalid");
    free(good);
    free(c);
}
END_TEST

START_TEST(refuse_oversized)
{
    char *big = malloc(9000);
    memset(big, 'a', 8999);
    big[8999] = '\0';
    memcpy(big + 100, ".", 1);
    memcpy(big + 200, ".", 1);
    expect(big, MCPAUTH_INVALID_TOKEN, "token larger than 8192 bytes");
    free(big);
}
END_TEST

/* ------------------------------------------------------------- claims */

/* The formats come from the case tables below, so they are literals in
 * all but name. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static char *claims_with(const char *fmt, long a, long b)
{
    char *out = NULL;
    if (asprintf(&out, fmt, a, b) < 0)
        return NULL;
    return out;
}
#pragma GCC diagnostic pop

START_TEST(refuse_claims)
{
    long now = time(NULL);
    struct {
        const char *fmt;
        long a, b;
        const char *why;
    } cases[] = {
        {"{\"iss\":\"https://evil.example.com\",\"aud\":\"" RES_A "\",\"exp\":%ld}", now + 60, 0,
         "token issuer is not accepted for this resource"},
        {"{\"iss\":\"" ISS "/\",\"aud\":\"" RES_A "\",\"exp\":%ld}", now + 60, 0,
         "token issuer is not accepted for this resource"},
        {"{\"aud\":\"" RES_A "\",\"exp\":%ld}", now + 60, 0, "token has no valid iss"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_B "\",\"exp\":%ld}", now + 60, 0,
         "token audience does not include this resource"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "/\",\"exp\":%ld}", now + 60, 0,
         "token audience does not include this resource"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"https://mcp.example.com\",\"exp\":%ld}", now + 60, 0,
         "token audience does not include this resource"},
        {"{\"iss\":\"" ISS "\",\"exp\":%ld}", now + 60, 0,
         "token audience does not include this resource"},
        {"{\"iss\":\"" ISS "\",\"aud\":[1,2],\"exp\":%ld}", now + 60, 0,
         "token audience does not include this resource"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\"}", 0, 0, "token has no exp"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":\"%ld\"}", now + 60, 0,
         "exp is not a valid time"},
        /* found by tests/fuzz (claims): an exp past int64 is clamped by
         * json-c to INT64_MAX, and exp + leeway overflowed (undefined
         * behaviour); libjwt cannot mint the larger one, INT64_MAX is the
         * same case */
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":9223372036854775807%.0ld}", 0, 0,
         "exp is not a valid time"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":1000000000000000%.0ld}", 0, 0,
         "exp is not a valid time"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":%ld}", now - 61, 0, "token expired"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":%ld,\"nbf\":%ld}", now + 600, now + 120,
         "token not valid yet (nbf)"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":%ld,\"iat\":%ld}", now + 600, now + 120,
         "token issued in the future (iat)"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":%ld,\"sub\":[%ld]}", now + 60, 1,
         "sub is not a valid string"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":%ld,\"sub\":\"a\\nb%ld\"}", now + 60, 1,
         "sub is not a valid string"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":%ld,\"scope\":%ld}", now + 60, 5,
         "scope is not valid"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *c = claims_with(cases[i].fmt, cases[i].a, cases[i].b);
        char *t = tk_mint(rsa, c, NULL);
        mcpauth_decision d;
        mcpauth_validate_token(val, A, t, strlen(t), "GET", NULL, &d);
        ck_assert_msg(d.verdict == MCPAUTH_INVALID_TOKEN && strcmp(d.description, cases[i].why) == 0,
                      "case %zu: verdict %d \"%s\", want \"%s\"", i, d.verdict, d.description,
                      cases[i].why);
        check_code(&d);
        free(c);
        free(t);
    }
}
END_TEST

/* Regression: an OpenID ID token (nonce, at_hash) signed by the same keys
 * is refused even when its audience is accepted. */
START_TEST(refuse_id_token)
{
    long now = time(NULL);
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"legacy-client-id\",\"sub\":\"bob\",\"scope\":\"read\","
             "\"nonce\":\"n-0S6_WzA2Mj\",\"exp\":%ld}", now + 60);
    char *t = tk_mint(rsa, claims, NULL);
    expect(t, MCPAUTH_INVALID_TOKEN, "an ID token is not an access token");
    free(t);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"sub\":\"bob\",\"scope\":\"read\","
             "\"at_hash\":\"77QmUPtjPfzWtF2AnpK9RQ\",\"exp\":%ld}", now + 60);
    t = tk_mint(rsa, claims, NULL);
    expect(t, MCPAUTH_INVALID_TOKEN, "an ID token is not an access token");
    free(t);
}
END_TEST

START_TEST(require_typ)
{
    teardown();
    load(NULL, "require_typ = yes");
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(rsa, c, NULL); /* libjwt 1.10 always writes typ JWT */
    expect(t, MCPAUTH_INVALID_TOKEN, "token typ must be at+jwt");
    free(t);
    t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", c);
    expect(t, MCPAUTH_INVALID_TOKEN, "token typ must be at+jwt");
    free(t);
    t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"at+jwt\"}", c);
    expect(t, MCPAUTH_ALLOW, NULL);
    free(t);
    t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"application/AT+JWT\"}", c);
    expect(t, MCPAUTH_ALLOW, NULL);
    free(t);
    free(c);
}
END_TEST

/* -------------------------------------------------------------- scopes */

START_TEST(insufficient_scope)
{
    char *c = tk_claims(ISS, RES_A, "write", 300);
    char *t = tk_mint(rsa, c, NULL);
    mcpauth_decision d;
    check(A, t, "GET", MCPAUTH_INSUFFICIENT_SCOPE, "token lacks a required scope", &d);
    ck_assert_str_eq(d.scope_needed, "read");
    ck_assert_str_eq(d.id.subject, "alice");
    free(t);
    free(c);
    /* per-method: DELETE needs admin on top of read; the challenge names all */
    c = tk_claims(ISS, RES_A, "read", 300);
    t = tk_mint(rsa, c, NULL);
    check(A, t, "DELETE", MCPAUTH_INSUFFICIENT_SCOPE, NULL, &d);
    ck_assert_str_eq(d.scope_needed, "read admin");
    check(A, t, "POST", MCPAUTH_ALLOW, NULL, &d);
    /* extra scopes (the proxy's per-tool rules) */
    mcpauth_strlist extra = {0, NULL};
    mcpauth_strlist_split(&extra, "write read");
    mcpauth_validate_token(val, A, t, strlen(t), "POST", &extra, &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_INSUFFICIENT_SCOPE);
    ck_assert_str_eq(d.scope_needed, "read write");
    mcpauth_strlist_free(&extra);
    /* a scope that merely starts like a required one is not it */
    free(t);
    free(c);
    c = tk_claims(ISS, RES_A, "readonly reader", 300);
    t = tk_mint(rsa, c, NULL);
    expect(t, MCPAUTH_INSUFFICIENT_SCOPE, "token lacks a required scope");
    free(t);
    free(c);
}
END_TEST

/* --------------------------------------------------------------- cache */

START_TEST(cache_hit_and_resource_binding)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(rsa, c, NULL);
    mcpauth_decision d;
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(d.cached, 0);
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(d.cached, 1);
    ck_assert_str_eq(d.id.subject, "alice");
    /* accepted for A, cached for A: still refused for B */
    check(B, t, "GET", MCPAUTH_INVALID_TOKEN, "token audience does not include this resource", &d);
    ck_assert_int_eq(d.cached, 0);
    check(B, t, "GET", MCPAUTH_INVALID_TOKEN, "token audience does not include this resource", &d);
    ck_assert_int_eq(d.cached, 1); /* negative result remembered */
    /* and the cache does not bypass scopes */
    check(A, t, "DELETE", MCPAUTH_INSUFFICIENT_SCOPE, NULL, &d);
    ck_assert_int_eq(d.cached, 1);
    free(t);
    free(c);
}
END_TEST

START_TEST(cache_never_outlives_exp)
{
    teardown();
    load("clock_leeway = 0", NULL);
    long now = time(NULL);
    char *c = claims_with("{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"scope\":\"read\",\"exp\":%ld%.0ld}",
                          now + 2, 0);
    char *t = tk_mint(rsa, c, NULL);
    mcpauth_decision d;
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    sleep(3);
    check(A, t, "GET", MCPAUTH_INVALID_TOKEN, "token expired", &d);
    free(t);
    free(c);
}
END_TEST

START_TEST(cache_disabled)
{
    teardown();
    load("cache_entries = 0", NULL);
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(rsa, c, NULL);
    mcpauth_decision d;
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(d.cached, 0);
    free(t);
    free(c);
}
END_TEST

/* ------------------------------------------------- requests and replies */

static void request(const char *authz, const char *query, const char *method, mcpauth_decision *d)
{
    const char *params[] = {"REQUEST_METHOD", method, "REQUEST_URI", "/a", "QUERY_STRING",
                            query ? query : "", "REMOTE_ADDR", "192.0.2.1",
                            authz ? "HTTP_AUTHORIZATION" : NULL, authz, NULL};
    char uri[256];
    snprintf(uri, sizeof uri, "/a%s%s", query ? "?" : "", query ? query : "");
    params[3] = uri;
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, params, &req, &resp);
    mcpauth_validate_request(val, A, &req, NULL, d);
    check_code(d);
}

START_TEST(extraction)
{
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(rsa, c, NULL);
    char h[4096];
    mcpauth_decision d;
    request(NULL, NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_NO_TOKEN);
    ck_assert_str_eq(d.scope_needed, "read");
    request("Basic YWxpY2U6cHc=", NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_NO_TOKEN);
    snprintf(h, sizeof h, "Bearer %s", t);
    request(h, NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_ALLOW);
    snprintf(h, sizeof h, "bEaReR   %s", t);
    request(h, NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_ALLOW);
    request("Bearer", NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_BAD_REQUEST);
    ck_assert_str_eq(d.description, "empty Bearer token");
    request("Bearer ", NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_BAD_REQUEST);
    request("BearerX abc", NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_NO_TOKEN);
    snprintf(h, sizeof h, "Bearer %s, Bearer %s", t, t); /* two headers, joined */
    request(h, NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_BAD_REQUEST);
    ck_assert_str_eq(d.description,
                     "malformed Authorization header (one Bearer token of RFC 6750 syntax expected)");
    request("Bearer a b", NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_BAD_REQUEST);
    request("Bearer a=b", NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_BAD_REQUEST);
    request("Bearer \"quoted\"", NULL, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_BAD_REQUEST);
    char q[4096];
    snprintf(q, sizeof q, "x=1&access_token=%s", t);
    request(NULL, q, "GET", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_BAD_REQUEST);
    ck_assert_str_eq(d.description, "access tokens are accepted only in the Authorization header");
    snprintf(h, sizeof h, "Bearer %s", t);
    request(h, q, "GET", &d); /* header and query both: still refused */
    ck_assert_int_eq(d.verdict, MCPAUTH_BAD_REQUEST);
    request(NULL, "my_access_token=1", "GET", &d); /* not the parameter */
    ck_assert_int_eq(d.verdict, MCPAUTH_NO_TOKEN);
    free(t);
    free(c);
}
END_TEST

static void respond(const mcpauth_decision *d, memhttp *m)
{
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(m, NULL, &req, &resp);
    mcpauth_decision_respond(d, A, &resp);
}

START_TEST(challenges)
{
    memhttp m;
    mcpauth_decision d;
    request(NULL, NULL, "GET", &d);
    respond(&d, &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 401 Unauthorized\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out,
        "WWW-Authenticate: Bearer resource_metadata=\"https://mcp.example.com/.well-known/"
        "oauth-protected-resource/a\", scope=\"read\"\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "Access-Control-Expose-Headers: WWW-Authenticate\r\n"));
    ck_assert_ptr_nonnull(strstr(memhttp_body(&m), "\"error\":\"invalid_token\""));

    request("Bearer abc.def.ghi", NULL, "GET", &d);
    respond(&d, &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 401 Unauthorized\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out,
        "WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"malformed token "
        "header\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-"
        "resource/a\", scope=\"read\"\r\n"));
    ck_assert_ptr_null(strstr(m.out, "abc.def.ghi")); /* never echo the token */

    request("Bearer a b", NULL, "GET", &d);
    respond(&d, &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 400 Bad Request\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out, "WWW-Authenticate: Bearer error=\"invalid_request\""));

    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(rsa, c, NULL);
    char h[4096];
    snprintf(h, sizeof h, "Bearer %s", t);
    request(h, NULL, "DELETE", &d);
    respond(&d, &m);
    ck_assert_ptr_nonnull(strstr(m.out, "Status: 403 Forbidden\r\n"));
    ck_assert_ptr_nonnull(strstr(m.out,
        "WWW-Authenticate: Bearer error=\"insufficient_scope\", error_description=\"token lacks a "
        "required scope\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-"
        "resource/a\", scope=\"read admin\"\r\n"));
    ck_assert_ptr_nonnull(strstr(memhttp_body(&m), "\"error\":\"insufficient_scope\""));
    free(t);
    free(c);
}
END_TEST


/* Issue 10: "a\u0000b" is not "a" (json-c keeps the whole string; C
 * would compare the part before the NUL). */
START_TEST(refuse_embedded_nul)
{
    long now = time(NULL);
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\\u0000x\",\"sub\":\"alice\",\"scope\":\"read\","
             "\"exp\":%ld}", now + 60);
    char *t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", claims);
    expect(t, MCPAUTH_INVALID_TOKEN, "token audience does not include this resource");
    free(t);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":[\"" RES_A "\\u0000x\"],\"sub\":\"alice\",\"scope\":\"read\","
             "\"exp\":%ld}", now + 60);
    t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", claims);
    expect(t, MCPAUTH_INVALID_TOKEN, "token audience does not include this resource");
    free(t);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"sub\":\"alice\",\"scp\":[\"read\\u0000x\"],"
             "\"exp\":%ld}", now + 60);
    t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", claims);
    expect(t, MCPAUTH_INVALID_TOKEN, "scope is not valid");
    free(t);
    char *c = tk_claims(ISS, RES_A, "read", 300);
    t = tk_sign(rsa, "{\"alg\":\"RS256\\u0000x\",\"kid\":\"rsa1\"}", c);
    expect(t, MCPAUTH_INVALID_TOKEN, "token algorithm not accepted");
    free(t);
    free(c);
}
END_TEST

/* Tokens whose issuer is the built-in AS are looked up in its revocation
 * list (runtime_dir/revoked.shm): after a full check and on cache hits;
 * without the list they are refused (503). */
START_TEST(builtin_revocation_list)
{
    char global[256], as_sec[256], rpath[200];
    snprintf(global, sizeof global, "jwt_algorithms = RS256\nruntime_dir = %s", dir);
    snprintf(as_sec, sizeof as_sec, "[authorization_server]\nissuer = " ISS "\nstate_dir = %s\n",
             dir);
    snprintf(rpath, sizeof rpath, "%s/revoked.shm", dir);
    unlink(rpath);
    teardown();
    mcpauth_log_set_level(MCPAUTH_LOG_ERROR);
    load(global, as_sec);
    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *t = tk_mint(rsa, c, NULL);
    mcpauth_decision d;
    /* no list yet: fail closed, not cached */
    check(A, t, "GET", MCPAUTH_UNAVAILABLE, "the revocation list is unavailable", &d);
    char err[256];
    mcpauth__revoked *w = mcpauth__revoked_open_rw(rpath, 1024, err, sizeof err);
    ck_assert_msg(w != NULL, "%s", err);
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    check(A, t, "GET", MCPAUTH_ALLOW, NULL, &d);
    ck_assert_int_eq(d.cached, 1);
    unsigned char h[32];
    SHA256((const unsigned char *)t, strlen(t), h);
    ck_assert_int_eq(mcpauth__revoked_add(w, h, time(NULL) + 300, time(NULL)), 0);
    check(A, t, "GET", MCPAUTH_INVALID_TOKEN, "token has been revoked", &d);
    ck_assert_int_eq(d.cached, 1);
    mcpauth__revoked_close(w);
    unlink(rpath);
    free(t);
    free(c);
    mcpauth_log_set_level(MCPAUTH_LOG_WARN);
}
END_TEST

/* The refusal code is set with the verdict on every path, and a refusal
 * served from the cache keeps the code it was stored with. */
START_TEST(refusal_codes)
{
    mcpauth_decision d;
    request(NULL, NULL, "GET", &d);
    ck_assert_int_eq(d.refusal, MCPAUTH_REFUSAL_NO_TOKEN);
    request("Bearer a b", NULL, "GET", &d);
    ck_assert_int_eq(d.refusal, MCPAUTH_REFUSAL_BAD_REQUEST);
    request(NULL, "access_token=abc", "GET", &d);
    ck_assert_int_eq(d.refusal, MCPAUTH_REFUSAL_BAD_REQUEST);

    char *c = tk_claims(ISS, RES_A, "read", 300);
    char *good = tk_mint(rsa, c, NULL);
    char *t = tk_compose("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":5}", c,
                         strrchr(good, '.') + 1);
    expect(t, MCPAUTH_INVALID_TOKEN, "malformed typ");
    free(t);
    long now = time(NULL);
    char claims[512];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"client_id\":5,\"exp\":%ld}", now + 60);
    t = tk_mint(rsa, claims, NULL);
    expect(t, MCPAUTH_INVALID_TOKEN, "client_id is not a valid string");
    free(t);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"azp\":[1],\"exp\":%ld}", now + 60);
    t = tk_mint(rsa, claims, NULL);
    expect(t, MCPAUTH_INVALID_TOKEN, "azp is not a valid string");
    free(t);

    /* cached refusals: the code comes back with the text */
    check(B, good, "GET", MCPAUTH_INVALID_TOKEN, NULL, &d);
    ck_assert_int_eq(d.cached, 0);
    ck_assert_int_eq(d.refusal, MCPAUTH_REFUSAL_AUDIENCE);
    check(B, good, "GET", MCPAUTH_INVALID_TOKEN, NULL, &d);
    ck_assert_int_eq(d.cached, 1);
    ck_assert_int_eq(d.refusal, MCPAUTH_REFUSAL_AUDIENCE);
    ck_assert_str_eq(d.description, "token audience does not include this resource");
    snprintf(claims, sizeof claims,
             "{\"iss\":\"" ISS "\",\"aud\":\"" RES_A "\",\"exp\":%ld}", now - 3600);
    t = tk_mint(rsa, claims, NULL);
    for (int i = 0; i < 2; i++) {
        check(A, t, "GET", MCPAUTH_INVALID_TOKEN, "token expired", &d);
        ck_assert_int_eq(d.cached, i);
        ck_assert_int_eq(d.refusal, MCPAUTH_REFUSAL_EXPIRED);
    }
    free(t);

    /* the proxy's second look (per-tool scopes), and back to allowed */
    char h[4096];
    snprintf(h, sizeof h, "Bearer %s", good);
    request(h, NULL, "POST", &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_ALLOW);
    ck_assert_int_eq(d.refusal, MCPAUTH_REFUSAL_NONE);
    const char *params[] = {"REQUEST_METHOD", "POST", "REQUEST_URI", "/a", "REMOTE_ADDR",
                            "192.0.2.1", NULL};
    memhttp m;
    mcpauth_request req;
    mcpauth_response resp;
    memhttp_setup(&m, params, &req, &resp);
    mcpauth_strlist extra = {0, NULL};
    mcpauth_strlist_split(&extra, "admin");
    mcpauth_validate_scopes(A, &req, &extra, &d);
    ck_assert_int_eq(d.verdict, MCPAUTH_INSUFFICIENT_SCOPE);
    ck_assert_int_eq(d.refusal, MCPAUTH_REFUSAL_SCOPE);
    mcpauth_strlist_free(&extra);
    free(good);
    free(c);

    /* names: stable, static, total */
    ck_assert_str_eq(mcpauth_refusal_name(MCPAUTH_REFUSAL_NONE), "none");
    ck_assert_str_eq(mcpauth_refusal_name(MCPAUTH_REFUSAL_NOT_YET_VALID), "not_yet_valid");
    ck_assert_str_eq(mcpauth_refusal_name(MCPAUTH_REFUSAL_COUNT), "other");
    for (int r = 0; r < MCPAUTH_REFUSAL_COUNT; r++)
        ck_assert_ptr_nonnull(mcpauth_refusal_name((mcpauth_refusal)r));
}
END_TEST

/* The paths that need an authorization server: introspection (inactive,
 * another issuer, none reachable) and remote keys that cannot be had, on
 * an in-process server (tests/support/httpd.c). */
START_TEST(refusal_codes_remote)
{
    static httpd h;
    httpd_no_proxy_env();
    ck_assert_int_eq(httpd_start(&h, NULL), 0);
    httpd_resp inactive = {.headers = "Content-Type: application/json\r\n",
                           .body = "{\"active\":false}"};
    httpd_resp other = {.headers = "Content-Type: application/json\r\n",
                        .body = "{\"active\":true,\"iss\":\"https://evil.example.com\"}"};
    ck_assert_int_eq(httpd_route(&h, "/inactive", &inactive), 0);
    ck_assert_int_eq(httpd_route(&h, "/other", &other), 0);
    int dead = httpd_free_port();
    ck_assert_int_gt(dead, 0);
    char base[64], text[4096], err[512] = "";
    snprintf(base, sizeof base, "http://127.0.0.1:%d", h.port);
#define R(n, iss) "[resource " n "]\nuri = https://mcp.example.com/" n "\nauthorization_servers = " \
                  iss "\n"
#define INTRO "introspection_client_id = gate\nintrospection_client_secret = s\n"
    snprintf(text, sizeof text,
             R("i", "%1$s/i") R("o", "%1$s/o") R("k", "%1$s/k") R("d", "http://127.0.0.1:%2$d")
             "[issuer i]\nissuer = %1$s/i\nintrospection_endpoint = %1$s/inactive\n" INTRO
             "[issuer o]\nissuer = %1$s/o\nintrospection_endpoint = %1$s/other\n" INTRO
             "[issuer k]\nissuer = %1$s/k\njwks_uri = %1$s/no-keys-here\n"
             "[issuer d]\nissuer = http://127.0.0.1:%2$d\n"
             "introspection_endpoint = http://127.0.0.1:%2$d/introspect\n" INTRO,
             base, dead);
#undef R
#undef INTRO
    mcpauth_config *c = mcpauth_config_parse(text, strlen(text), "r.conf", err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    mcpauth_validator *v = mcpauth_validator_new(c, err, sizeof err);
    ck_assert_msg(v != NULL, "%s", err);
    static const struct {
        const char *res;
        mcpauth_verdict verdict;
        mcpauth_refusal r;
    } cases[] = {
        {"i", MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_INACTIVE},
        {"i", MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_INACTIVE}, /* from the cache */
        {"o", MCPAUTH_INVALID_TOKEN, MCPAUTH_REFUSAL_ISSUER},
        {"k", MCPAUTH_UNAVAILABLE, MCPAUTH_REFUSAL_UNAVAILABLE},
        {"d", MCPAUTH_UNAVAILABLE, MCPAUTH_REFUSAL_UNAVAILABLE},
    };
    char iss_k[128], claims[512];
    snprintf(iss_k, sizeof iss_k, "%s/k", base);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"%s\",\"aud\":\"https://mcp.example.com/k\",\"exp\":%ld}", iss_k,
             (long)time(NULL) + 60);
    char *jwt = tk_mint(rsa, claims, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const mcpauth_resource *res = mcpauth_config_resource_by_name(c, cases[i].res);
        const char *t = strcmp(cases[i].res, "k") == 0 ? jwt : "opaque-token-1";
        mcpauth_decision d;
        mcpauth_validate_token(v, res, t, strlen(t), "GET", NULL, &d);
        ck_assert_msg(d.verdict == cases[i].verdict, "case %zu: verdict %d (%s)", i, d.verdict,
                      d.description);
        ck_assert_msg(d.refusal == cases[i].r, "case %zu: refusal %s (%s)", i,
                      mcpauth_refusal_name(d.refusal), d.description);
        ck_assert_int_eq(d.cached, i == 1);
        check_code(&d);
    }
    free(jwt);
    mcpauth_validator_free(v);
    mcpauth_config_free(c);
    httpd_stop(&h);
}
END_TEST

static char logged[8192];

static void log_grab(void *arg, mcpauth_log_level level, int security, const char *line,
                     size_t len)
{
    (void)arg;
    (void)level;
    (void)security;
    size_t have = strlen(logged);
    if (have + len + 2 < sizeof logged) {
        memcpy(logged + have, line, len);
        logged[have + len] = '\n';
        logged[have + len + 1] = '\0';
    }
}

/* mcpauth_validator_check (mod_mcpauth's parent as root, --check): the key
 * files only; neither the revocation list nor the shared cache is opened,
 * created or complained about, while a validator that serves does. */
START_TEST(check_opens_nothing_in_runtime_dir)
{
    char rdir[128], global[512], as_sec[256], path[200], err[512] = "";
    snprintf(rdir, sizeof rdir, "%s/run", dir);
    ck_assert_int_eq(mkdir(rdir, 0700), 0);
    snprintf(global, sizeof global, "jwt_algorithms = RS256\nruntime_dir = %s\nshared_cache = yes",
             rdir);
    snprintf(as_sec, sizeof as_sec, "[authorization_server]\nissuer = " ISS "\nstate_dir = %s\n",
             dir);
    teardown();
    logged[0] = '\0';
    mcpauth_log_set_callback(log_grab, NULL);
    load(global, as_sec); /* a serving validator: complains, and makes cache.shm */
    ck_assert_msg(strstr(logged, "revocation_list_unavailable") != NULL, "%s", logged);
    snprintf(path, sizeof path, "%s/cache.shm", rdir);
    ck_assert_int_eq(access(path, F_OK), 0);
    unlink(path);

    logged[0] = '\0';
    ck_assert_int_eq(mcpauth_validator_check(cfg, err, sizeof err), 0);
    mcpauth_log_set_callback(NULL, NULL);
    ck_assert_msg(logged[0] == '\0', "a check logged: %s", logged);
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_int_eq(rmdir(rdir), 0); /* nothing left in it */

    /* and it still checks the key files */
    char text[1024];
    snprintf(path, sizeof path, "%s/bad.json", dir);
    tk_write(path, "{\"keys\": 5}");
    snprintf(text, sizeof text,
             "[resource a]\nuri = " RES_A "\nauthorization_servers = " ISS "\n"
             "[issuer local]\nissuer = " ISS "\njwks_file = %s\n", path);
    mcpauth_config *bad = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_ptr_nonnull(bad);
    err[0] = '\0';
    ck_assert_int_eq(mcpauth_validator_check(bad, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "error does not name the file: %s", err);
    mcpauth_config_free(bad);
    unlink(path);
}
END_TEST

START_TEST(bad_jwks_file_stops_startup)
{
    char path[128], err[512] = "", text[1024];
    snprintf(path, sizeof path, "%s/bad.json", dir);
    tk_write(path, "{\"keys\": 5}");
    snprintf(text, sizeof text,
             "[resource a]\nuri = " RES_A "\nauthorization_servers = " ISS "\n"
             "[issuer local]\nissuer = " ISS "\njwks_file = %s\n", path);
    mcpauth_config *c = mcpauth_config_parse(text, strlen(text), "t.conf", err, sizeof err);
    ck_assert_ptr_nonnull(c);
    mcpauth_validator *v = mcpauth_validator_new(c, err, sizeof err);
    ck_assert_ptr_null(v);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "error does not name the file: %s", err);
    mcpauth_config_free(c);
    unlink(path);
}
END_TEST

Suite *validate_suite(void)
{
    Suite *s = suite_create("validate");
    TCase *tc = tcase_create("jwt");
    tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, accept_rs256);
    tcase_add_test(tc, accept_es256_and_ps256);
    tcase_add_test(tc, accept_audience_array_and_extra_audience);
    tcase_add_test(tc, accept_without_kid_single_fitting_key);
    tcase_add_test(tc, accept_within_leeway);
    tcase_add_test(tc, refuse_alg_none);
    tcase_add_test(tc, refuse_hmac_with_public_key);
    tcase_add_test(tc, refuse_alg_not_in_allow_list);
    tcase_add_test(tc, refuse_alg_key_mismatch);
    tcase_add_test(tc, refuse_unknown_kid_and_wrong_key);
    tcase_add_test(tc, refuse_embedded_key_headers);
    tcase_add_test(tc, refuse_crit);
    tcase_add_test(tc, refuse_malformed);
    tcase_add_test(tc, refuse_oversized);
    tcase_add_test(tc, refuse_claims);
    tcase_add_test(tc, require_typ);
    tcase_add_test(tc, refuse_id_token);
    tcase_add_test(tc, insufficient_scope);
    tcase_add_test(tc, cache_hit_and_resource_binding);
    tcase_add_test(tc, cache_never_outlives_exp);
    tcase_add_test(tc, cache_disabled);
    tcase_add_test(tc, extraction);
    tcase_add_test(tc, challenges);
    tcase_add_test(tc, bad_jwks_file_stops_startup);
    tcase_add_test(tc, refuse_embedded_nul);
    tcase_add_test(tc, builtin_revocation_list);
    tcase_add_test(tc, refusal_codes);
    tcase_add_test(tc, refusal_codes_remote);
    tcase_add_test(tc, check_opens_nothing_in_runtime_dir);
    suite_add_tcase(s, tc);
    return s;
}
