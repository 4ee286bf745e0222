/* mcpauth-proxy, on real lighttpd and real Apache, relaying to an https
 * backend elsewhere (here: a lighttpd with mod_openssl on loopback, in
 * front of the example MCP server), with certificates made here: a server
 * CA, another CA, a client CA.  The backend's certificate is accepted with
 * the right backend_ca_file and refused with another one or the system
 * store (502, a JSON-RPC error, a backend_tls_failed line); a backend that
 * requires a client certificate gets one from backend_client_cert/_key
 * and refuses the proxy without; backend_pinned_pubkey accepts the
 * backend's key and refuses another. */
#define _GNU_SOURCE
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "../support/tokens.h"
#include "harness.h"

/* Every resource relays to the same example MCP server through one of the
 * TLS terminator's two ports: %1$d verifies no client, %2$d requires a
 * client certificate.  %3$s is the folder of the certificates, %4$s the
 * pin of the backend's key, %5$s a pin of another key. */
static const char conf_tmpl[] =
    "runtime_dir = @DIR@\n"
    "log_level = info\n"
    "backend_timeout = 10\n"
    "[resource good]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/good\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = https://127.0.0.1:%1$d/mcp\n"
    "backend_ca_file = %3$s/ca.pem\n"
    "[resource wrongca]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/wrongca\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = https://127.0.0.1:%1$d/mcp\n"
    "backend_ca_file = %3$s/other-ca.pem\n"
    "[resource system]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/system\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = https://127.0.0.1:%1$d/mcp\n"
    "[resource mtls]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/mtls\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = https://127.0.0.1:%2$d/mcp\n"
    "backend_ca_file = %3$s/ca.pem\n"
    "backend_client_cert = %3$s/client.pem\n"
    "backend_client_key = %3$s/client.key\n"
    "[resource nocert]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/nocert\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = https://127.0.0.1:%2$d/mcp\n"
    "backend_ca_file = %3$s/ca.pem\n"
    "[resource pinned]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/pinned\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = https://127.0.0.1:%1$d/mcp\n"
    "backend_ca_file = %3$s/ca.pem\n"
    "backend_pinned_pubkey = %5$s;%4$s\n"
    "[resource badpin]\n"
    "uri = http://127.0.0.1:@PORT@/mcp/badpin\n"
    "authorization_servers = http://127.0.0.1:@PORT@\n"
    "backend = https://127.0.0.1:%1$d/mcp\n"
    "backend_ca_file = %3$s/ca.pem\n"
    "backend_pinned_pubkey = %5$s\n"
    "[issuer local]\n"
    "issuer = http://127.0.0.1:@PORT@\n"
    "jwks_file = @DIR@/jwks.json\n";

static const char lighttpd_extra[] =
    "var.mcpauth_proxy_prefix = \"/mcp\"\n"
    "include \"@SRCDIR@/lighttpd/mcpauth-proxy.conf\"\n";

static const char apache_extra[] =
    "Define MCPAUTH_PROXY_LOCATION /mcp\n"
    "Include \"@SRCDIR@/apache/mcpauth-proxy.conf\"\n";

/* The backend's TLS terminator: lighttpd with mod_openssl and mod_proxy
 * in front of the example MCP server. */
static const char tls_conf_tmpl[] =
    "server.document-root = \"%1$s\"\n"
    "server.bind = \"127.0.0.1\"\n"
    "server.port = %2$d\n"
    "server.errorlog = \"%1$s/tls-error.log\"\n"
    "server.pid-file = \"%1$s/tls.pid\"\n"
    "server.modules = ( \"mod_openssl\", \"mod_proxy\" )\n"
    "ssl.engine = \"enable\"\n"
    "ssl.pemfile = \"%1$s/server.pem\"\n"
    "ssl.privkey = \"%1$s/server.key\"\n"
    "proxy.server = ( \"\" => (( \"host\" => \"127.0.0.1\", \"port\" => %4$d )) )\n"
    "$SERVER[\"socket\"] == \"127.0.0.1:%3$d\" {\n"
    "    ssl.engine = \"enable\"\n"
    /* with its CA: lighttpd builds the chain from what it is given */
    "    ssl.pemfile = \"%1$s/chain.pem\"\n"
    "    ssl.privkey = \"%1$s/server.key\"\n"
    "    ssl.verifyclient.ca-file = \"%1$s/client-ca.pem\"\n"
    "    ssl.verifyclient.activate = \"enable\"\n"
    "    ssl.verifyclient.enforce = \"enable\"\n"
    "}\n";

static tk_key *rsa;
static char *jwks;
static th_server srv;
static char certs[] = "/tmp/mcpauth-btls-XXXXXX";
static pid_t backend_pid = -1, tls_pid = -1;
static int backend_port, tls_port, mtls_port;
static char pin[128], other_pin[128];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* "sha256//" and the base64 SHA-256 of the public key of a PEM private key. */
static int pin_of(const char *key, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl pkey -in %s -pubout -outform der 2>/dev/null | "
             "openssl dgst -sha256 -binary | base64", key);
    FILE *p = popen(cmd, "r");
    char b64[128] = "";
    if (!p || !fgets(b64, sizeof b64, p)) {
        if (p)
            pclose(p);
        return -1;
    }
    pclose(p);
    b64[strcspn(b64, "\n")] = '\0';
    snprintf(out, cap, "sha256//%s", b64);
    return strlen(b64) == 44 ? 0 : -1;
}

/* Three CAs, the backend's certificate for 127.0.0.1 from the first, a
 * client certificate from the third; the client key readable by the
 * proxy's user only. */
static int make_certs(void)
{
    static const char ec[] = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    const char *d = certs;
    int rc = sh("cd %s && exec >openssl.log 2>&1 && "
                "openssl req -x509 %s -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem && "
                "openssl req -x509 %s -days 2 -subj /CN=other-ca -keyout other-ca.key "
                "-out other-ca.pem && "
                "openssl req -x509 %s -days 2 -subj /CN=client-ca -keyout client-ca.key "
                "-out client-ca.pem && "
                "openssl req %s -subj /CN=127.0.0.1 -keyout server.key -out server.csr && "
                "printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext && "
                "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                "-days 2 -extfile server.ext -out server.pem && "
                "openssl req %s -subj /CN=mcpauth-proxy -keyout client.key -out client.csr && "
                "openssl x509 -req -in client.csr -CA client-ca.pem -CAkey client-ca.key "
                "-CAcreateserial -days 2 -out client.pem && "
                "cat server.pem ca.pem > chain.pem && chmod 644 *.pem && chmod 600 *.key",
                d, ec, ec, ec, ec, ec);
    if (rc != 0)
        return -1;
    /* Apache's children run as www-data: the key is theirs, mode 600 */
    char key[256];
    snprintf(key, sizeof key, "%s/client.key", d);
    struct passwd *pw = geteuid() == 0 ? getpwnam("www-data") : NULL;
    if (pw && chown(key, pw->pw_uid, pw->pw_gid) < 0)
        return -1;
    char other[256];
    snprintf(other, sizeof other, "%s/other-ca.key", d);
    snprintf(key, sizeof key, "%s/server.key", d);
    return pin_of(key, pin, sizeof pin) == 0 && pin_of(other, other_pin, sizeof other_pin) == 0
               ? 0
               : -1;
}

static void start_backend(void)
{
    backend_pid = th_start_example_server(certs, &backend_port);
    if (backend_pid < 0)
        exit(EXIT_FAILURE);
    tls_port = th_free_port();
    do
        mtls_port = th_free_port();
    while (mtls_port == tls_port);
    char *text = NULL;
    if (asprintf(&text, tls_conf_tmpl, certs, tls_port, mtls_port, backend_port) < 0 ||
        th_write_file(certs, "tls.conf", text) < 0)
        exit(EXIT_FAILURE);
    free(text);
    char conf[256], log[256], *bin = getenv("LIGHTTPD") ? getenv("LIGHTTPD") : "/usr/sbin/lighttpd";
    char *mods = getenv("LIGHTTPD_MODULES_DIR") ? getenv("LIGHTTPD_MODULES_DIR")
                                                : "/usr/lib/lighttpd";
    snprintf(conf, sizeof conf, "%s/tls.conf", certs);
    snprintf(log, sizeof log, "%s/tls.out", certs);
    char *argv[] = {bin, "-D", "-f", conf, "-m", mods, NULL};
    tls_pid = th_spawn(argv, NULL, log);
    if (tls_pid < 0 || th_wait_port(tls_port, 10000) != 0 || th_wait_port(mtls_port, 10000) != 0) {
        fprintf(stderr, "the TLS terminator did not start: see %s/tls-error.log\n", certs);
        th_kill(tls_pid);
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
}

static void start(th_kind kind)
{
    start_backend();
    char *conf = NULL;
    if (asprintf(&conf, conf_tmpl, tls_port, mtls_port, certs, pin, other_pin) < 0)
        exit(EXIT_FAILURE);
    const char *files[] = {"jwks.json", jwks, NULL};
    th_options o = {conf, kind == TH_LIGHTTPD ? lighttpd_extra : apache_extra, files, NULL};
    int rc = th_start_ex(&srv, kind, &o);
    free(conf);
    if (rc != 0) {
        th_kill(tls_pid);
        th_kill(backend_pid);
        exit(EXIT_FAILURE);
    }
    th_give_to_apache(&srv); /* the proxy's runtime_dir */
}
static void start_lighttpd(void) { start(TH_LIGHTTPD); }
static void start_apache(void) { start(TH_APACHE); }
static void stop(void)
{
    th_stop(&srv);
    th_kill(tls_pid);
    th_kill(backend_pid);
    tls_pid = backend_pid = -1;
}

#define INIT_BODY                                                                             \
    "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"initialize\",\"params\":{\"protocolVersion\":" \
    "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}"

static void initialize(const char *name, th_resp *r)
{
    char path[64], aud[256], url[256], h[8192];
    snprintf(path, sizeof path, "/mcp/%s", name);
    snprintf(aud, sizeof aud, "%s%s", srv.base, path);
    snprintf(url, sizeof url, "%s%s", srv.base, path);
    char *c = tk_claims(srv.base, aud, "", 600);
    char *t = tk_mint(rsa, c, NULL);
    snprintf(h, sizeof h, "Authorization: Bearer %s", t);
    free(c);
    free(t);
    const char *hdrs[] = {h, "Content-Type: application/json",
                          "Accept: application/json, text/event-stream", NULL};
    ck_assert_msg(th_http("POST", url, hdrs, INIT_BODY, r) == 0, "no response from %s", url);
}

static void expect_relayed(const char *name)
{
    th_resp r;
    initialize(name, &r);
    ck_assert_msg(r.status == 200, "%s: %ld %s", name, r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"protocolVersion\":\"2025-06-18\""));
    th_resp_free(&r);
}

/* 502, a JSON-RPC error with the request's id, and one log line naming
 * the resource and why (libcurl's words, e.g. the certificate problem). */
static void expect_refused(const char *name, const char *why)
{
    char needle[128];
    snprintf(needle, sizeof needle, "event=backend_tls_failed resource=%s ", name);
    int before = th_log_count(&srv, needle);
    th_resp r;
    initialize(name, &r);
    ck_assert_msg(r.status == 502, "%s: %ld %s", name, r.status, r.body);
    json_object *o = json_tokener_parse(r.body), *e, *c, *id;
    ck_assert_msg(o != NULL, "not JSON: %s", r.body);
    ck_assert(json_object_object_get_ex(o, "error", &e));
    ck_assert(json_object_object_get_ex(e, "code", &c));
    ck_assert_int_eq(json_object_get_int(c), -32000);
    ck_assert(json_object_object_get_ex(o, "id", &id));
    ck_assert_int_eq(json_object_get_int(id), 7);
    json_object_put(o);
    th_resp_free(&r);
    int found = th_wait_log(&srv, needle, before + 1, 5000) > before;
    char *log = th_error_log(&srv);
    ck_assert_msg(found, "no \"%s\" line in the log:\n%s", needle, log);
    ck_assert_msg(strstr(log, why) || th_log_count(&srv, why) > 0,
                  "the log does not say \"%s\":\n%s", why, log);
    free(log);
}

START_TEST(right_ca_accepted)
{
    expect_relayed("good");
}
END_TEST

START_TEST(other_ca_refused)
{
    expect_refused("wrongca", "certificate");
    /* no backend_ca_file and no ca_file: the system store, which knows
     * nothing of this CA */
    expect_refused("system", "certificate");
}
END_TEST

START_TEST(client_certificate)
{
    expect_relayed("mtls");
    expect_refused("nocert", "alert");
}
END_TEST

START_TEST(pinned_key)
{
    expect_relayed("pinned");
    th_resp r;
    initialize("badpin", &r);
    ck_assert_msg(r.status == 502, "badpin: %ld %s", r.status, r.body);
    th_resp_free(&r);
    ck_assert(th_log_count(&srv, "event=backend_tls_failed resource=badpin ") > 0);
}
END_TEST

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, stop);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, right_ca_accepted);
    tcase_add_test(tc, other_ca_refused);
    tcase_add_test(tc, client_certificate);
    tcase_add_test(tc, pinned_key);
    return tc;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(certs) || chmod(certs, 0755) < 0 || make_certs() < 0) {
        fprintf(stderr, "could not make the certificates in %s\n", certs);
        return EXIT_FAILURE;
    }
    rsa = tk_key_new("RS256", "k1", 2048);
    jwks = tk_jwks(&rsa, 1);
    Suite *s = suite_create("backend-tls-servers");
    suite_add_tcase(s, server_case("lighttpd", start_lighttpd));
    suite_add_tcase(s, server_case("apache", start_apache));
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(jwks);
    tk_key_free(rsa);
    if (!getenv("MCPAUTH_KEEP_TEST_DIRS") && sh("rm -rf %s", certs) != 0)
        fprintf(stderr, "could not remove %s\n", certs);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
