/* mcpauth(8): administration of the built-in authorization server's state
 * directory: set-up, signing-key rotation, clients, revocation, upkeep.
 * Thin on purpose: the logic lives in lib/store.c and lib/keys.c. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include <mcpauth/config.h>
#include <mcpauth/log.h>
#include <mcpauth/mcpauth.h>

#include "alloc.h"
#include "keys.h"
#include "revoked.h"
#include "store.h"
#include "strbuf.h"
#include "uri.h"

/* The [authorization_server] section of mcpauth.conf(5). */
#define CFG_STATE_DIR(c) ((c)->as ? (c)->as->state_dir : NULL)
#define CFG_SIGNING_ALG(c) ((c)->as ? (c)->as->signing_alg : NULL)
#define CFG_TOKEN_TTL(c) ((c)->as ? (c)->as->access_token_ttl : 0L)

#define PROG "mcpauth"
#define EXIT_USAGE 2
#define DEFAULT_ALG "ES256"
#define DEFAULT_KEY_RETENTION 86400L

typedef struct {
    const char *config_file;    /* --config or $MCPAUTH_CONFIG */
    int config_given;           /* --config on the command line */
    const char *state_dir_opt;  /* --state-dir */
    mcpauth_config *cfg;        /* loaded when needed */
    char state_dir[PATH_MAX];
    int argc;                   /* the command and its arguments */
    char **argv;
} ctx;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int make_dirs(const char *dir, mode_t mode, int *created);

static void fail(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " [--config FILE] [--state-dir DIR] COMMAND [ARGS]\n"
            "Administers the state of the mcpauth authorization server (mcpauth-as),\n"
            "and sets up and checks shared hosting (.htaccess).\n"
            "\n"
            "Commands:\n"
            "  init [--alg ES256|RS256] [--owner USER]\n"
            "                        create the state directory, database, server secret\n"
            "                        and a first signing key (only what is missing)\n"
            "  rotate-key [--alg ES256|RS256]\n"
            "                        make a new current signing key; the previous one stays\n"
            "                        published until its tokens have expired\n"
            "  keys                  list the signing keys still recorded\n"
            "  clients list          one line per client: client_id, kind, name, created,\n"
            "                        authentication method (tab separated)\n"
            "  clients show ID       every field of a client\n"
            "  clients delete ID     delete a client and everything issued to it\n"
            "  revoke --user USER | --client ID\n"
            "                        revoke their refresh-token families\n"
            "  purge [--key-retention SECONDS]\n"
            "                        delete expired codes, tokens, and keys retired longer\n"
            "                        than SECONDS (default %ld, or access_token_ttl if longer)\n"
            "  site --docroot DIR --url https://HOST [--path /mcp] [--mode fcgid|cgi]\n"
            "       [--htpasswd FILE] [--backend URL [--resource NAME]] [--force]\n"
            "                        shared hosting: write the .htaccess files and program\n"
            "                        wrappers into DIR (and, with --backend, a configuration)\n"
            "  site-check [URL...]   check the configuration, state and keys as this user,\n"
            "                        and what clients get at each MCP URL\n"
            "\n"
            "Options:\n"
            "  --config FILE         configuration file (default: $MCPAUTH_CONFIG, else\n"
            "                        %s)\n"
            "  --state-dir DIR       state directory, overriding the configuration's state_dir\n"
            "  --help                print this help and exit\n"
            "  --version             print the version and exit\n"
            "Exit status: 0 success, 1 failure, 2 usage error.  See mcpauth(8).\n",
            DEFAULT_KEY_RETENTION, mcpauth_config_default_file());
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry '" PROG " --help'.\n", stderr);
    return EXIT_USAGE;
}

/* ---------------------------------------------------------------- output */

/* Values from the network (client names, ids, URIs) are printed with
 * control characters, invalid UTF-8 and C1 controls escaped, so a
 * registration cannot write terminal escape sequences to an admin's
 * screen, nor fake lines or columns. */
static void put_safe(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned c = *p;
        size_t len = 1;
        unsigned cp = c;
        if (c >= 0x80) {
            len = c >= 0xf5 ? 0 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            cp = len == 4 ? c & 0x07 : len == 3 ? c & 0x0f : c & 0x1f;
            for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80) {
                    len = 0;
                    break;
                }
                cp = cp << 6 | (p[i] & 0x3f);
            }
            if (len && ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                        (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0))
                len = 0;
        }
        if (c == '\\') {
            fputs("\\\\", f);
        } else if (c < 0x20 || c == 0x7f || len == 0) {
            fprintf(f, "\\x%02x", c);
            len = 1;
        } else {
            fwrite(p, 1, len, f);
        }
        p += len;
    }
}

static const char *iso_time(time_t t, char *buf, size_t len)
{
    struct tm tm;
    if (t == 0 || !gmtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "-");
    return buf;
}

/* --------------------------------------------------------- state directory */

static int load_config(ctx *c)
{
    if (c->cfg)
        return 0;
    const char *file = c->config_file && *c->config_file ? c->config_file
                                                         : mcpauth_config_default_file();
    char err[512];
    if (!(c->cfg = mcpauth_config_load(file, err, sizeof err))) {
        fail("configuration error: %s", err);
        return -1;
    }
    return 0;
}

/* The state directory: --state-dir, else state_dir from the configuration.
 * The configuration is read only when needed or asked for (--config), so
 * --state-dir alone works without one. */
static int resolve_state_dir(ctx *c)
{
    if (c->config_given || !c->state_dir_opt)
        if (load_config(c) < 0)
            return -1;
    const char *dir = c->state_dir_opt ? c->state_dir_opt : CFG_STATE_DIR(c->cfg);
    if (!dir || !*dir) {
        fail("%s: no state_dir in [authorization_server]; give --state-dir DIR", c->cfg->file);
        return -1;
    }
    if (snprintf(c->state_dir, sizeof c->state_dir, "%s", dir) >= (int)sizeof c->state_dir) {
        fail("state directory %s: path too long", dir);
        return -1;
    }
    return 0;
}

/* Key files are recorded by path: make it absolute once the directory
 * exists, so the server finds them whatever its working directory. */
static int absolute_state_dir(ctx *c)
{
    char real[PATH_MAX];
    if (!realpath(c->state_dir, real)) {
        fail("state directory %s: %s%s", c->state_dir, strerror(errno),
             errno == ENOENT ? " (run `" PROG " init`)" : "");
        return -1;
    }
    snprintf(c->state_dir, sizeof c->state_dir, "%s", real);
    return 0;
}

static int path_in(char *out, size_t len, const char *dir, const char *name)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Gives one file of the layout to uid:gid, never following a link. */
static int chown_one(const char *path, uid_t uid, gid_t gid, int must_exist)
{
    if (fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (errno == ENOENT && !must_exist)
        return 0;
    fail("cannot change the owner of %s: %s", path, strerror(errno));
    return -1;
}

/* state_dir, mcpauth.db(-wal, -shm), secret, keys/ and keys/\*.pem. */
static int chown_layout(const char *dir, uid_t uid, gid_t gid)
{
    static const char *const files[] = {"mcpauth.db", "mcpauth.db-wal", "mcpauth.db-shm",
                                        "secret", "keys"};
    char path[PATH_MAX];
    if (chown_one(dir, uid, gid, 1) < 0)
        return -1;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (path_in(path, sizeof path, dir, files[i]) < 0 || chown_one(path, uid, gid, 0) < 0)
            return -1;
    char keys[PATH_MAX];
    if (path_in(keys, sizeof keys, dir, "keys") < 0)
        return -1;
    DIR *d = opendir(keys);
    if (!d)
        return errno == ENOENT ? 0 : (fail("%s: %s", keys, strerror(errno)), -1);
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".pem") == 0)
            rc = path_in(path, sizeof path, keys, de->d_name) < 0 ? -1
                                                                 : chown_one(path, uid, gid, 1);
    }
    closedir(d);
    return rc;
}

/* Run as root on a directory the web server's user owns, the tool works as
 * that user, so every file it creates (keys, the database's -wal and -shm
 * files) stays usable by the server. */
static int become_owner(const char *dir)
{
    struct stat st;
    if (geteuid() != 0)
        return 0;
    if (stat(dir, &st) < 0) {
        fail("state directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (st.st_uid == 0)
        return 0;
    if (setgroups(0, NULL) < 0 || setgid(st.st_gid) < 0 || setuid(st.st_uid) < 0) {
        fail("cannot switch to the owner of %s (uid %ld): %s", dir, (long)st.st_uid,
             strerror(errno));
        return -1;
    }
    return 0;
}

static mcpauth_store *open_store(ctx *c)
{
    char err[512];
    mcpauth_store *s = mcpauth__store_open(c->state_dir, err, sizeof err);
    if (!s)
        fail("%s", err);
    return s;
}

/* Prepares everything but init: the directory must exist already. */
static mcpauth_store *open_existing(ctx *c)
{
    if (resolve_state_dir(c) < 0 || absolute_state_dir(c) < 0 || become_owner(c->state_dir) < 0)
        return NULL;
    char db[PATH_MAX];
    if (path_in(db, sizeof db, c->state_dir, "mcpauth.db") < 0 || access(db, F_OK) < 0) {
        fail("%s/mcpauth.db does not exist (run `" PROG " init`)", c->state_dir);
        return NULL;
    }
    return open_store(c);
}

/* ------------------------------------------------------------------- keys */

typedef struct {
    char kid[64];
    char alg[8];
    int found;
} current_key;

static int find_current(const mcpauth_keyinfo *k, void *arg)
{
    current_key *cur = arg;
    if (k->retired != 0)
        return 0;
    snprintf(cur->kid, sizeof cur->kid, "%s", k->kid ? k->kid : "");
    snprintf(cur->alg, sizeof cur->alg, "%s", k->alg ? k->alg : "");
    cur->found = 1;
    return 1; /* newest first: the first current one */
}

static int current_key_of(mcpauth_store *s, current_key *cur)
{
    memset(cur, 0, sizeof *cur);
    if (mcpauth__store_key_list(s, time(NULL), find_current, cur) < 0) {
        fail("cannot read the signing keys from the database");
        return -1;
    }
    return 0;
}

static const char *pick_alg(ctx *c, const char *opt, const char *fallback)
{
    if (opt)
        return opt;
    const char *conf = c->cfg ? CFG_SIGNING_ALG(c->cfg) : NULL;
    return conf && *conf ? conf : fallback && *fallback ? fallback : DEFAULT_ALG;
}

static int check_alg(const char *alg)
{
    return alg && (strcmp(alg, "ES256") == 0 || strcmp(alg, "RS256") == 0);
}

static int new_key(ctx *c, mcpauth_store *s, const char *alg, char *kid, size_t kidlen)
{
    char err[512];
    if (mcpauth__keys_generate(s, c->state_dir, alg, time(NULL), kid, kidlen, err, sizeof err) < 0) {
        fail("%s", err);
        return -1;
    }
    /* What the server will do next: load it. */
    mcpauth_signer *k = mcpauth__keys_load_current(s, err, sizeof err);
    if (!k) {
        fail("%s", err);
        return -1;
    }
    mcpauth__signer_free(k);
    return 0;
}

/* Option parsing for commands: "--name VALUE" or "--name=VALUE". */
static int opt_value(char **argv, int argc, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *out = argv[++*i];
    return 1;
}

#define OPTION(name, var)                                                                    \
    if ((r = opt_value(c->argv, c->argc, &i, name, &var)) < 0)                               \
        return usage_error("%s needs a value", name);                                        \
    else if (r > 0)                                                                          \
        continue

/* Opens (creating) the revocation list at path and pushes the store's
 * revoked grants into it.  0, or -1 with a reason in err. */
static int sync_revoked(mcpauth_store *s, const char *path, char *err, size_t errlen)
{
    mcpauth__revoked *r = mcpauth__revoked_open_rw(path, MCPAUTH__REVOKED_SLOTS, err, errlen);
    int rc = r && mcpauth__revoked_sync(r, s, time(NULL)) >= 0 ? 0 : -1;
    if (r && rc < 0)
        snprintf(err, errlen, "cannot fill it from the database");
    mcpauth__revoked_close(r);
    return rc;
}

/* The shared files in runtime_dir belong to the web server's user too: one
 * left by a program run as root would keep the AS (and so every login) from
 * starting. */
static int chown_runtime(ctx *c, uid_t uid, gid_t gid)
{
    static const char *const files[] = {MCPAUTH__REVOKED_FILE, "proxy.shm"};
    char path[PATH_MAX];
    if (!c->cfg || !c->cfg->runtime_dir)
        return 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (path_in(path, sizeof path, c->cfg->runtime_dir, files[i]) < 0 ||
            chown_one(path, uid, gid, 0) < 0)
            return -1;
    return 0;
}

/* Creates the AS's revocation list as the state's owner (init runs as
 * that user by then), filled from the store. */
static int init_revoked(ctx *c, mcpauth_store *s)
{
    char path[PATH_MAX], err[512];
    if (!c->cfg || !c->cfg->as || !c->cfg->runtime_dir)
        return 0;
    if (mcpauth__revoked_path(c->cfg, path, sizeof path) < 0) {
        fail("runtime_dir %s: path too long", c->cfg->runtime_dir);
        return -1;
    }
    int had = access(path, F_OK) == 0;
    /* not fatal: mcpauth-as creates it at start when runtime_dir is
     * writable for it, and refuses to start (saying so) otherwise */
    if (sync_revoked(s, path, err, sizeof err) < 0)
        fprintf(stderr, PROG ": warning: revocation list %s: %s\n", path, err);
    else
        printf("%s revocation list %s\n", had ? "opened" : "created", path);
    return 0;
}

static int cmd_init(ctx *c)
{
    const char *alg = NULL, *owner = NULL;
    for (int i = 1, r; i < c->argc; i++) {
        OPTION("--alg", alg);
        OPTION("--owner", owner);
        return usage_error("init: unknown argument \"%s\"", c->argv[i]);
    }
    if (alg && !check_alg(alg))
        return usage_error("--alg must be ES256 or RS256, not \"%s\"", alg);
    struct passwd *pw = NULL;
    if (owner) {
        if (!*owner)
            return usage_error("--owner needs a user name");
        if (geteuid() != 0) {
            fail("--owner %s: only root can give files to another user", owner);
            return 1;
        }
        errno = 0;
        if (!(pw = getpwnam(owner))) {
            fail("--owner %s: no such user", owner);
            return 1;
        }
    }
    if (resolve_state_dir(c) < 0)
        return 1;
    if (!check_alg(pick_alg(c, alg, NULL))) {
        fail("%s: signing_alg must be ES256 or RS256", c->cfg ? c->cfg->file : "configuration");
        return 1;
    }

    /* with its parents: a home-directory prefix has no var/lib yet */
    int created = 0;
    if (make_dirs(c->state_dir, 0700, &created) < 0) {
        fail("cannot create state directory %s: %s", c->state_dir, strerror(errno));
        return 1;
    }
    if (created)
        printf("created state directory %s\n", c->state_dir);
    const char *rt = c->cfg ? c->cfg->runtime_dir : NULL;
    if (rt && access(rt, F_OK) != 0) {
        if (make_dirs(rt, 0700, NULL) < 0) {
            fail("cannot create runtime_dir %s: %s", rt, strerror(errno));
            return 1;
        }
        printf("created runtime directory %s\n", rt);
        if (pw && chown_one(rt, pw->pw_uid, pw->pw_gid, 1) < 0)
            return 1;
    }
    if (absolute_state_dir(c) < 0)
        return 1;
    struct stat st;
    if (stat(c->state_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fail("state directory %s: not a directory", c->state_dir);
        return 1;
    }
    if (st.st_mode & 077)
        fprintf(stderr, PROG ": warning: state directory %s has mode %04o; 0700 is enough\n",
                c->state_dir, (unsigned)(st.st_mode & 07777));
    if (pw) {
        if (chown_layout(c->state_dir, pw->pw_uid, pw->pw_gid) < 0 ||
            chown_runtime(c, pw->pw_uid, pw->pw_gid) < 0)
            return 1;
        printf("owner of %s and its files: %s\n", c->state_dir, pw->pw_name);
    }
    if (become_owner(c->state_dir) < 0)
        return 1;

    char db[PATH_MAX];
    if (path_in(db, sizeof db, c->state_dir, "mcpauth.db") < 0) {
        fail("state directory %s: path too long", c->state_dir);
        return 1;
    }
    int had_db = access(db, F_OK) == 0;
    mcpauth_store *s = open_store(c);
    if (!s)
        return 1;
    printf("%s database %s\n", had_db ? "opened" : "created", db);

    int rc = 1;
    char err[512];
    int made = mcpauth__secret_create(c->state_dir, err, sizeof err);
    if (made < 0) {
        fail("%s", err);
        goto out;
    }
    printf("%s server secret %s/secret\n", made ? "created" : "kept", c->state_dir);
    if (init_revoked(c, s) < 0)
        goto out;

    current_key cur;
    if (current_key_of(s, &cur) < 0)
        goto out;
    if (cur.found) {
        /* Check it as the server will, rather than make a second one. */
        mcpauth_signer *k = mcpauth__keys_load_current(s, err, sizeof err);
        if (!k) {
            fail("%s", err);
            goto out;
        }
        mcpauth__signer_free(k);
        printf("kept current signing key %s (%s)\n", cur.kid, cur.alg);
        if (alg && strcmp(alg, cur.alg) != 0)
            printf("(--alg %s applies to new keys: `" PROG " rotate-key --alg %s` makes one)\n",
                   alg, alg);
    } else {
        char kid[64];
        const char *a = pick_alg(c, alg, NULL);
        if (new_key(c, s, a, kid, sizeof kid) < 0)
            goto out;
        printf("created signing key %s (%s) in %s/keys\n", kid, a, c->state_dir);
    }
    rc = 0;
out:
    mcpauth__store_close(s);
    return rc;
}

static int cmd_rotate_key(ctx *c)
{
    const char *alg = NULL;
    for (int i = 1, r; i < c->argc; i++) {
        OPTION("--alg", alg);
        return usage_error("rotate-key: unknown argument \"%s\"", c->argv[i]);
    }
    if (alg && !check_alg(alg))
        return usage_error("--alg must be ES256 or RS256, not \"%s\"", alg);
    mcpauth_store *s = open_existing(c);
    if (!s)
        return 1;
    int rc = 1;
    current_key old;
    if (current_key_of(s, &old) < 0)
        goto out;
    const char *a = pick_alg(c, alg, old.found ? old.alg : NULL);
    if (!check_alg(a)) {
        fail("signing algorithm \"%s\" is neither ES256 nor RS256", a);
        goto out;
    }
    char kid[64];
    if (new_key(c, s, a, kid, sizeof kid) < 0)
        goto out;
    printf("current signing key: %s (%s)\n", kid, a);
    if (old.found)
        printf("retired signing key: %s (%s), published until its tokens expire\n", old.kid,
               old.alg);
    rc = 0;
out:
    mcpauth__store_close(s);
    return rc;
}

static int print_key(const mcpauth_keyinfo *k, void *arg)
{
    (void)arg;
    char created[32], retired[32];
    printf("%s\t%s\t%s\t%s\t", k->kid, k->alg, iso_time(k->created, created, sizeof created),
           k->retired ? iso_time(k->retired, retired, sizeof retired) : "current");
    put_safe(stdout, k->file);
    putchar('\n');
    return 0;
}

static int cmd_keys(ctx *c)
{
    if (c->argc > 1)
        return usage_error("keys: unknown argument \"%s\"", c->argv[1]);
    mcpauth_store *s = open_existing(c);
    if (!s)
        return 1;
    int rc = 0;
    if (mcpauth__store_key_list(s, 0, print_key, NULL) < 0) {
        fail("cannot read the signing keys from the database");
        rc = 1;
    }
    mcpauth__store_close(s);
    return rc;
}

static int print_client_line(const mcpauth_client *cl, void *arg)
{
    (void)arg;
    char created[32];
    put_safe(stdout, cl->client_id);
    putchar('\t');
    put_safe(stdout, cl->kind ? cl->kind : "-");
    putchar('\t');
    put_safe(stdout, cl->client_name && *cl->client_name ? cl->client_name : "-");
    printf("\t%s\t", iso_time(cl->created, created, sizeof created));
    put_safe(stdout, cl->token_endpoint_auth_method ? cl->token_endpoint_auth_method : "-");
    putchar('\n');
    return 0;
}

static void field(const char *name, const char *value)
{
    printf("%-27s ", name);
    put_safe(stdout, value && *value ? value : "-");
    putchar('\n');
}

static void show_client(const mcpauth_client *cl)
{
    char t[32];
    field("client_id:", cl->client_id);
    field("client_name:", cl->client_name);
    field("kind:", cl->kind);
    field("created:", iso_time(cl->created, t, sizeof t));
    field("registered_by:", cl->registered_by);
    field("token_endpoint_auth_method:", cl->token_endpoint_auth_method);
    field("grant_types:", cl->grant_types);
    if (!cl->secret_hash)
        field("client_secret:", "none");
    else if (cl->secret_expires == 0)
        field("client_secret:", "set, never expires");
    else {
        char buf[64];
        snprintf(buf, sizeof buf, "set, %s %s",
                 cl->secret_expires > time(NULL) ? "expires" : "expired",
                 iso_time(cl->secret_expires, t, sizeof t));
        field("client_secret:", buf);
    }
    json_object *uris = cl->redirect_uris ? json_tokener_parse(cl->redirect_uris) : NULL;
    if (uris && json_object_is_type(uris, json_type_array)) {
        size_t n = json_object_array_length(uris);
        if (n == 0)
            field("redirect_uri:", NULL);
        for (size_t i = 0; i < n; i++)
            field("redirect_uri:", json_object_get_string(json_object_array_get_idx(uris, i)));
    } else {
        field("redirect_uris:", cl->redirect_uris); /* not a JSON array: as stored */
    }
    json_object_put(uris);
}

/* Revoked grants must reach mcpauth-gate and mcpauth-proxy at once, not
 * when mcpauth-as next writes the shared list: push them now.  The list is
 * never created here (as root it would get the wrong owner). */
static void push_revocations(ctx *c, mcpauth_store *s)
{
    char path[PATH_MAX], err[512];
    const char *file = c->config_file && *c->config_file ? c->config_file
                                                         : mcpauth_config_default_file();
    if (!c->cfg && access(file, R_OK) != 0) {
        fprintf(stderr, PROG ": note: no configuration, so the gate and proxy see these "
                "revocations when mcpauth-as next revokes or starts\n");
        return;
    }
    if (load_config(c) != 0 || mcpauth__revoked_path(c->cfg, path, sizeof path) < 0)
        return;
    if (access(path, F_OK) != 0) {
        fprintf(stderr, PROG ": note: %s does not exist yet; mcpauth-as creates it\n", path);
        return;
    }
    if (sync_revoked(s, path, err, sizeof err) < 0)
        fprintf(stderr, PROG ": warning: cannot update %s (%s): the gate and proxy see these "
                "revocations when mcpauth-as next revokes or starts\n", path, err);
}

static int cmd_clients(ctx *c)
{
    if (c->argc < 2)
        return usage_error("clients: list, show ID or delete ID");
    const char *sub = c->argv[1];
    int first = 2;
    if (c->argc > 2 && strcmp(c->argv[2], "--") == 0)
        first = 3;
    int nargs = c->argc - first;
    if (strcmp(sub, "list") == 0) {
        if (c->argc > 2)
            return usage_error("clients list: unknown argument \"%s\"", c->argv[2]);
    } else if (strcmp(sub, "show") == 0 || strcmp(sub, "delete") == 0) {
        if (nargs != 1)
            return usage_error("clients %s needs one client ID", sub);
        if (first == 2 && c->argv[2][0] == '-')
            return usage_error("clients %s: unknown option \"%s\" (use -- before an ID "
                               "starting with '-')", sub, c->argv[2]);
    } else {
        return usage_error("clients: unknown subcommand \"%s\" (list, show, delete)", sub);
    }

    mcpauth_store *s = open_existing(c);
    if (!s)
        return 1;
    int rc = 0;
    if (strcmp(sub, "list") == 0) {
        if (mcpauth__store_client_list(s, print_client_line, NULL) < 0) {
            fail("cannot list the clients in the database");
            rc = 1;
        }
    } else {
        const char *id = c->argv[first];
        mcpauth_client cl;
        int r = strcmp(sub, "show") == 0 ? mcpauth__store_client_get(s, id, &cl)
                                         : mcpauth__store_client_delete(s, id);
        if (r < 0) {
            fail("cannot %s the client in the database", sub);
            rc = 1;
        } else if (r == 0) {
            fflush(stdout);
            fputs(PROG ": no client ", stderr);
            put_safe(stderr, id); /* as typed, escaped like any value */
            fputc('\n', stderr);
            rc = 1;
        } else if (strcmp(sub, "show") == 0) {
            show_client(&cl);
            mcpauth__client_free(&cl);
        } else {
            push_revocations(c, s);
            fputs("deleted client ", stdout);
            put_safe(stdout, id);
            puts(" and everything issued to it");
        }
    }
    mcpauth__store_close(s);
    return rc;
}

static int cmd_revoke(ctx *c)
{
    const char *user = NULL, *client = NULL;
    for (int i = 1, r; i < c->argc; i++) {
        OPTION("--user", user);
        OPTION("--client", client);
        return usage_error("revoke: unknown argument \"%s\"", c->argv[i]);
    }
    if (!user == !client)
        return usage_error("revoke: give --user USER or --client ID");
    if (!*(user ? user : client))
        return usage_error("revoke: empty %s", user ? "user" : "client ID");
    mcpauth_store *s = open_existing(c);
    if (!s)
        return 1;
    int n = user ? mcpauth__store_revoke_user(s, user) : mcpauth__store_revoke_client(s, client);
    if (n > 0)
        push_revocations(c, s);
    mcpauth__store_close(s);
    if (n < 0) {
        fail("cannot revoke in the database");
        return 1;
    }
    printf("revoked %d token famil%s of %s ", n, n == 1 ? "y" : "ies", user ? "user" : "client");
    put_safe(stdout, user ? user : client);
    putchar('\n');
    return 0;
}

static int cmd_purge(ctx *c)
{
    const char *ret = NULL;
    for (int i = 1, r; i < c->argc; i++) {
        OPTION("--key-retention", ret);
        return usage_error("purge: unknown argument \"%s\"", c->argv[i]);
    }
    long retention = DEFAULT_KEY_RETENTION;
    if (ret) {
        char *end;
        errno = 0;
        retention = strtol(ret, &end, 10);
        if (errno || end == ret || *end || retention < 0 || retention > 100L * 365 * 86400)
            return usage_error("--key-retention: \"%s\" is not a number of seconds", ret);
    }
    mcpauth_store *s = open_existing(c);
    if (!s)
        return 1;
    /* Keys stay published as long as tokens they signed may be valid. */
    long ttl = c->cfg ? CFG_TOKEN_TTL(c->cfg) : 0;
    if (!ret && ttl > retention)
        retention = ttl;
    else if (ttl > retention)
        fprintf(stderr,
                PROG ": warning: --key-retention %ld is shorter than access_token_ttl (%ld): "
                "tokens signed by the keys deleted now will be refused\n",
                retention, ttl);
    time_t now = time(NULL);
    int rc = 0;
    char err[512];
    long rows = mcpauth__store_purge(s, now, now - (time_t)retention);
    if (rows < 0) {
        fail("cannot purge the database");
        rc = 1;
    } else {
        int files = mcpauth__keys_prune(s, c->state_dir, now, err, sizeof err);
        if (files < 0) {
            fail("%s", err);
            rc = 1;
        } else {
            printf("deleted %ld expired row%s and %d retired key file%s\n", rows,
                   rows == 1 ? "" : "s", files, files == 1 ? "" : "s");
        }
    }
    mcpauth__store_close(s);
    return rc;
}

/* ------------------------------------------------------ shared hosting */

/* `site` writes the .htaccess kit and the wrappers from the templates
 * installed in KIT_DIR; `site-check` tells whether a deployment works and,
 * when not, which line or host feature is missing (doc/shared-hosting.md). */
#define KIT_DIR PKGDATADIR "/apache/shared"
#define KIT_MAX (64 * 1024)

static const char *const kit_programs[] = {"mcpauth-metadata", "mcpauth-proxy", "mcpauth-as",
                                           "mcpauth-as-login"};
#define KIT_NPROGRAMS (sizeof kit_programs / sizeof kit_programs[0])

/* The whole file, NUL-terminated, or NULL with errno set. */
static char *slurp(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = mcpauth__xmalloc(max + 1);
    size_t n = fread(buf, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > max) {
        free(buf);
        errno = bad ? EIO : EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* tmpl with every @NAME@ of names replaced by its value; an unknown
 * @NAME@ is a broken template. */
static char *fill(const char *tmpl, const char *const *names, const char *const *values,
                  size_t n, const char *file)
{
    size_t cap = strlen(tmpl) + 1, len = 0;
    char *out = mcpauth__xmalloc(cap);
    for (const char *p = tmpl; *p;) {
        size_t k = 0;
        const char *v = NULL;
        if (*p == '@')
            for (size_t i = 0; i < n && !v; i++) {
                k = strlen(names[i]);
                if (strncmp(p + 1, names[i], k) == 0 && p[1 + k] == '@')
                    v = values[i];
            }
        if (!v && *p == '@' && strncmp(p, "@MCPAUTH_", 9) == 0) {
            fail("%s: unknown placeholder %.30s", file, p);
            free(out);
            return NULL;
        }
        const char *add = v ? v : p;
        size_t addlen = v ? strlen(v) : 1;
        if (len + addlen + 1 > cap) {
            cap = 2 * (len + addlen + 1);
            out = mcpauth__xrealloc(out, cap);
        }
        memcpy(out + len, add, addlen);
        len += addlen;
        p += v ? k + 2 : 1;
    }
    out[len] = '\0';
    return out;
}

/* The real path of path, also when its last components do not exist yet
 * (those are appended as written). */
static int resolve_path(const char *path, char *out, size_t len)
{
    char buf[PATH_MAX], abs[PATH_MAX];
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) || mcpauth__fmt(abs, sizeof abs, "%s/%s", cwd, path) < 0)
            return -1;
        path = abs;
    }
    if (realpath(path, buf)) {
        return snprintf(out, len, "%s", buf) >= (int)len ? -1 : 0;
    }
    if (errno != ENOENT)
        return -1;
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return snprintf(out, len, "%s", path) >= (int)len ? -1 : 0;
    char parent[PATH_MAX];
    if (snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path) >= (int)sizeof parent ||
        resolve_path(parent, buf, sizeof buf) < 0)
        return -1;
    return snprintf(out, len, "%s%s", strcmp(buf, "/") == 0 ? "" : buf, slash) >= (int)len ? -1
                                                                                            : 0;
}

/* 1 when path (resolved) is root or below it. */
static int path_under(const char *path, const char *root)
{
    char p[PATH_MAX];
    if (resolve_path(path, p, sizeof p) < 0)
        return 0;
    size_t n = strlen(root);
    return strncmp(p, root, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

typedef struct {
    char path[PATH_MAX];
    char *text;
    mode_t mode;
    int exists;   /* with other content */
    int same;     /* already exactly this */
    int ours;     /* a wrapper an earlier run wrote: replaced freely */
} kit_file;

static int kit_add(kit_file *f, const char *dir, const char *name, char *text, mode_t mode)
{
    if (!text)
        return -1;
    if (path_in(f->path, sizeof f->path, dir, name) < 0) {
        fail("%s/%s: path too long", dir, name);
        free(text);
        return -1;
    }
    f->text = text;
    f->mode = mode;
    char *old = slurp(f->path, KIT_MAX);
    if (old) {
        f->same = strcmp(old, text) == 0;
        f->ours = !f->same && mode == 0755 && strncmp(old, "#!/bin/sh\n", 10) == 0 &&
                  strstr(old, "written by `" PROG " site`") && strlen(old) < 1024;
        f->exists = !f->same && !f->ours;
        free(old);
    } else if (errno != ENOENT) {
        f->exists = 1;
    }
    return 0;
}

/* Writes beside the file and renames, so the web server never reads half
 * a .htaccess. */
static int kit_write(const kit_file *f)
{
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.mcpauth-new", f->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    size_t len = strlen(f->text);
    if (fd < 0 || write(fd, f->text, len) != (ssize_t)len || fchmod(fd, f->mode) < 0 ||
        fsync(fd) < 0) {
        fail("cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return -1;
    }
    if (close(fd) < 0 || rename(tmp, f->path) < 0) {
        fail("cannot write %s: %s", f->path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* mkdir -p with mode for what it creates. */
static int make_dirs(const char *dir, mode_t mode, int *created)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, mode) == 0) {
            if (chmod(buf, mode) < 0) /* past the umask */
                return -1;
            if (created)
                *created = 1;
        } else if (errno != EEXIST) {
            return -1;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (stat(dir, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* A folder of the site: "/name[/name...]" of unreserved characters. */
static int check_site_path(const char *p)
{
    if (p[0] != '/' || p[1] == '\0')
        return -1;
    for (const char *s = p; *s; s++) {
        if (*s == '/') {
            if (s[1] == '/' || (s[1] == '.' && (s[2] == '/' || s[2] == '\0' ||
                                                (s[2] == '.' && (s[3] == '/' || s[3] == '\0')))))
                return -1;
        } else if (!(isalnum((unsigned char)*s) || strchr("-._~", *s))) {
            return -1;
        }
    }
    return 0;
}

/* What goes between single quotes in the wrappers and double quotes in
 * the .htaccess: no quotes, backslashes, controls or spaces. */
static int plain_path(const char *p)
{
    for (; *p; p++)
        if ((unsigned char)*p <= ' ' || strchr("'\"\\$`", *p))
            return 0;
    return 1;
}

/* The starting configuration for one site: a resource relaying to
 * backend, protected by the built-in authorization server at base. */
static char *site_config(const char *site, const char *base, const char *resource,
                         const char *backend)
{
    char *s = NULL;
    if (asprintf(&s,
                 "# mcpauth.conf for %s, written by `" PROG " site`; every key is in\n"
                 "# mcpauth.conf(5).  More MCP servers: one [resource NAME] each, with\n"
                 "# uri = %s%s/NAME (the .htaccess needs no change).\n"
                 "\n"
                 "log_level = info\n"
                 "default_resource = %s\n"
                 "# Shared state of the processes (rate limits, sessions, revocations,\n"
                 "# caches); outside the document root.\n"
                 "runtime_dir = %s/lib/mcpauth/run\n"
                 "\n"
                 "[resource %s]\n"
                 "uri = %s%s/%s\n"
                 "resource_name = %s\n"
                 "authorization_servers = %s%s\n"
                 "backend = %s\n"
                 "\n"
                 "# The built-in authorization server; users sign in with the web\n"
                 "# server's Basic auth (the htpasswd file of the .htaccess).\n"
                 "[authorization_server]\n"
                 "issuer = %s%s\n"
                 "state_dir = %s/lib/mcpauth/state\n",
                 site, site, base, resource, LOCALSTATEDIR, resource, site, base, resource,
                 resource, site, base, backend, site, base, LOCALSTATEDIR) < 0)
        mcpauth__oom("configuration");
    return s;
}

/* The example make install puts in sysconfdir is a start for a root
 * install, not a configuration anyone chose: site may replace it. */
static int is_shipped_example(const char *file)
{
    char *a = slurp(file, 1 << 20), *b = slurp(EXAMPLE_CONF, 1 << 20);
    int same = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    return same;
}

static int cmd_site(ctx *c)
{
    const char *docroot = NULL, *url = NULL, *path = "/mcp", *mode = "fcgid", *htpasswd = NULL;
    const char *backend = NULL, *resource = "server", *templates = KIT_DIR;
    int force = 0;
    for (int i = 1, r; i < c->argc; i++) {
        OPTION("--docroot", docroot);
        OPTION("--url", url);
        OPTION("--path", path);
        OPTION("--mode", mode);
        OPTION("--htpasswd", htpasswd);
        OPTION("--backend", backend);
        OPTION("--resource", resource);
        OPTION("--templates", templates);
        if (strcmp(c->argv[i], "--force") == 0) {
            force = 1;
            continue;
        }
        return usage_error("site: unknown argument \"%s\"", c->argv[i]);
    }
    if (!docroot || !url)
        return usage_error("site needs --docroot DIR and --url URL");
    int fcgid = strcmp(mode, "fcgid") == 0;
    if (!fcgid && strcmp(mode, "cgi") != 0)
        return usage_error("--mode must be fcgid or cgi, not \"%s\"", mode);
    const char *ext = fcgid ? "fcgi" : "cgi";
    char base[256];
    size_t bl = strlen(path);
    while (bl > 1 && path[bl - 1] == '/')
        bl--;
    if (bl >= sizeof base)
        return usage_error("--path: too long");
    snprintf(base, sizeof base, "%.*s", (int)bl, path);
    if (check_site_path(base) < 0)
        return usage_error("--path \"%s\": a folder below the document root, like /mcp "
                           "(letters, digits, - . _ ~; not / itself: the kit would take the whole "
                           "site)", path);
    {
        char seg[300];
        snprintf(seg, sizeof seg, "/%s", resource);
        if (check_site_path(seg) < 0 || strcmp(resource, "oauth2") == 0)
            return usage_error("--resource \"%s\": one path segment (letters, digits, - . _ ~), "
                               "not oauth2", resource);
    }

    /* The site's URL: an origin.  RFC 9728 metadata lives at the host's
     * /.well-known/, which a ~user folder of someone else's host is not. */
    const char *why;
    char *site = mcpauth__uri_canonicalize(url, 0, &why);
    if (!site)
        return usage_error("--url \"%s\": %s", url, why);
    char *origin = NULL, *upath = NULL;
    mcpauth__uri_split(site, &origin, &upath);
    int haspath = upath[0] != '\0';
    free(upath);
    free(site);
    if (haspath) {
        fail("--url %s: give the site's origin (https://host), without a path: MCP clients "
             "look for the metadata at https://host/.well-known/, which only the owner of the "
             "host's root folder can serve.  Ask the host for a domain or subdomain whose "
             "document root is your folder, and put the kit in a folder of it with --path",
             url);
        free(origin);
        return 1;
    }

    int rc = 1;
    char root[PATH_MAX], conf[PATH_MAX], dir[PATH_MAX];
    kit_file files[3 + KIT_NPROGRAMS];
    size_t nfiles = 0;
    memset(files, 0, sizeof files);
    if (!realpath(docroot, root)) {
        fail("--docroot %s: %s", docroot, strerror(errno));
        goto out;
    }
    if (strcmp(root, "/") == 0 || !plain_path(root)) {
        fail("--docroot %s: not usable (quotes, spaces or /)", root);
        goto out;
    }
    const char *cfile = c->config_file && *c->config_file ? c->config_file
                                                          : mcpauth_config_default_file();
    if (resolve_path(cfile, conf, sizeof conf) < 0) {
        fail("configuration %s: %s", cfile, strerror(errno));
        goto out;
    }
    if (!plain_path(conf)) {
        fail("configuration %s: quotes, spaces and $ are not allowed in its path", conf);
        goto out;
    }
    if (path_under(conf, root)) {
        fail("the configuration %s is inside the document root %s, where the web server "
             "could send it to anyone: keep it outside (--config FILE)", conf, root);
        goto out;
    }

    /* --backend: a configuration for this site, over nothing but the
     * example make install left. */
    if (backend) {
        int exists = access(conf, F_OK) == 0;
        if (exists && !force && !is_shipped_example(conf)) {
            fail("%s exists and is not the shipped example: not replaced (edit it, or give "
                 "--force to replace it)", conf);
            goto out;
        }
        char *text = site_config(origin, base, resource, backend);
        char err[512];
        mcpauth_config *check = mcpauth_config_parse(text, strlen(text), conf, err, sizeof err);
        if (!check) {
            fail("the configuration for --backend %s would not load: %s", backend, err);
            free(text);
            goto out;
        }
        mcpauth_config_free(check);
        char cdir[PATH_MAX];
        snprintf(cdir, sizeof cdir, "%s", conf);
        *strrchr(cdir, '/') = '\0';
        if (*cdir && make_dirs(cdir, 0700, NULL) < 0) {
            fail("cannot create %s: %s", cdir, strerror(errno));
            free(text);
            goto out;
        }
        kit_file cf = {.mode = 0600, .text = text};
        snprintf(cf.path, sizeof cf.path, "%s", conf);
        int w = kit_write(&cf);
        free(text);
        if (w < 0)
            goto out;
        printf("wrote %s\n", conf);
    }

    c->config_file = conf;
    if (load_config(c) < 0)
        goto out;
    mcpauth_config *cfg = c->cfg;

    /* The .htaccess routes BASE/NAME to the proxy and BASE/oauth2/ to the
     * AS: the configuration must agree. */
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s%s/", origin, base);
    int mismatch = 0;
    for (size_t i = 0; i < cfg->nresources; i++) {
        const mcpauth_resource *r = &cfg->resources[i];
        if (strncmp(r->uri, want, strlen(want)) != 0 || !r->uri[strlen(want)] ||
            strncmp(r->uri + strlen(want), "oauth2", 6) == 0) {
            fail("%s: [resource %s] uri = %s is not below %s (where this kit serves MCP "
                 "endpoints): make it %s%s", cfg->file, r->name, r->uri, want, want, r->name);
            mismatch = 1;
        }
    }
    if (cfg->as) {
        char iss[PATH_MAX];
        snprintf(iss, sizeof iss, "%s", cfg->as->issuer);
        size_t il = strlen(iss);
        while (il > 0 && iss[il - 1] == '/')
            iss[--il] = '\0';
        if (strlen(want) != il + 1 || strncmp(iss, want, il) != 0) {
            fail("%s: [authorization_server] issuer = %s: this kit serves the authorization "
                 "server at %s%s/oauth2/; make it issuer = %s%s (and the resources' "
                 "authorization_servers too)", cfg->file, cfg->as->issuer, origin, base, origin,
                 base);
            mismatch = 1;
        }
        if (path_under(cfg->as->state_dir, root)) {
            fail("state_dir %s is inside the document root %s: keep the keys and the database "
                 "outside it", cfg->as->state_dir, root);
            mismatch = 1;
        }
    }
    if (cfg->runtime_dir && path_under(cfg->runtime_dir, root)) {
        fail("runtime_dir %s is inside the document root %s: keep it outside", cfg->runtime_dir,
             root);
        mismatch = 1;
    }
    if (cfg->nresources == 0)
        fprintf(stderr, PROG ": warning: %s has no [resource]: the proxy will answer 404\n",
                cfg->file);
    if (mismatch)
        goto out;

    char pw[PATH_MAX];
    if (!htpasswd)
        snprintf(pw, sizeof pw, "%s/mcpauth/htpasswd", SYSCONFDIR);
    else if (resolve_path(htpasswd, pw, sizeof pw) < 0) {
        fail("--htpasswd %s: %s", htpasswd, strerror(errno));
        goto out;
    }
    if (cfg->as && (!plain_path(pw) || path_under(pw, root))) {
        fail("--htpasswd %s: must be outside the document root, without quotes or spaces", pw);
        goto out;
    }

    /* Everything is checked before anything is written. */
    char tdir[PATH_MAX], tfile[PATH_MAX];
    if (resolve_path(templates, tdir, sizeof tdir) < 0) {
        fail("templates %s: %s", templates, strerror(errno));
        goto out;
    }
    char htname[32];
    snprintf(htname, sizeof htname, "htaccess-%s", mode);
    const char *tnames[] = {"htaccess-well-known", htname, "wrapper"};
    char *tmpl[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        path_in(tfile, sizeof tfile, tdir, tnames[i]);
        if (!(tmpl[i] = slurp(tfile, KIT_MAX))) {
            fail("template %s: %s", tfile, strerror(errno));
            for (int j = 0; j < i; j++)
                free(tmpl[j]);
            goto out;
        }
    }
    char wk[PATH_MAX];
    int ok = mcpauth__fmt(wk, sizeof wk, "%s/.well-known", root) == 0 &&
             mcpauth__fmt(dir, sizeof dir, "%s%s", root, base) == 0;
    if (!ok)
        fail("--docroot %s: path too long", root);
    {
        const char *names[] = {"MCPAUTH_BASE", "MCPAUTH_EXT", "MCPAUTH_HTPASSWD",
                               "MCPAUTH_TEMPLATE"};
        path_in(tfile, sizeof tfile, tdir, tnames[0]);
        const char *v0[] = {base, ext, pw, tfile};
        ok = ok && kit_add(&files[nfiles++], wk, ".htaccess", fill(tmpl[0], names, v0, 4, tfile),
                           0644) == 0;
        path_in(tfile, sizeof tfile, tdir, tnames[1]);
        const char *v1[] = {base, ext, pw, tfile};
        ok = ok && kit_add(&files[nfiles++], dir, ".htaccess", fill(tmpl[1], names, v1, 4, tfile),
                           0644) == 0;
    }
    path_in(tfile, sizeof tfile, tdir, tnames[2]);
    for (size_t i = 0; ok && i < KIT_NPROGRAMS; i++) {
        const char *names[] = {"MCPAUTH_NAME", "MCPAUTH_PROGRAM", "MCPAUTH_CONFIG",
                               "MCPAUTH_TEMPLATE"};
        char prog[PATH_MAX], wname[64];
        /* the sign-in is mcpauth-as behind Apache's login */
        snprintf(prog, sizeof prog, "%s/%s", LIBEXECDIR,
                 strcmp(kit_programs[i], "mcpauth-as-login") == 0 ? "mcpauth-as"
                                                                  : kit_programs[i]);
        snprintf(wname, sizeof wname, "%s.%s", kit_programs[i], ext);
        const char *v[] = {kit_programs[i], prog, conf, tfile};
        ok = kit_add(&files[nfiles++], dir, wname, fill(tmpl[2], names, v, 4, tfile), 0755) == 0;
    }
    for (int j = 0; j < 3; j++)
        free(tmpl[j]);
    if (!ok)
        goto out;
    int refused = 0;
    for (size_t i = 0; i < nfiles; i++)
        if (files[i].exists && !force) {
            fail("%s exists with other content: not overwritten (merge by hand, or --force)",
                 files[i].path);
            refused = 1;
        }
    if (refused) {
        fprintf(stderr, PROG ": nothing written; what would be written:\n");
        for (size_t i = 0; i < nfiles; i++)
            if (files[i].exists)
                fprintf(stderr, "---- %s\n%s", files[i].path, files[i].text);
        goto out;
    }
    const char *mk[] = {wk, dir};
    for (int i = 0; i < 2; i++)
        if (make_dirs(mk[i], 0755, NULL) < 0) {
            fail("cannot create %s: %s", mk[i], strerror(errno));
            goto out;
        }
    for (size_t i = 0; i < nfiles; i++) {
        if (files[i].same) {
            printf("unchanged %s\n", files[i].path);
            continue;
        }
        if (kit_write(&files[i]) < 0)
            goto out;
        printf("%s %s\n", files[i].exists || files[i].ours ? "replaced" : "wrote", files[i].path);
    }

    /* the other mode's wrappers, when an earlier run wrote them */
    for (size_t i = 0; i < KIT_NPROGRAMS; i++) {
        char stale[PATH_MAX], name[64];
        snprintf(name, sizeof name, "%s.%s", kit_programs[i], fcgid ? "cgi" : "fcgi");
        char *old = path_in(stale, sizeof stale, dir, name) == 0 ? slurp(stale, 1024) : NULL;
        if (old && strncmp(old, "#!/bin/sh\n", 10) == 0 && strstr(old, "written by `" PROG " site`") &&
            unlink(stale) == 0)
            printf("removed %s\n", stale);
        free(old);
    }

    printf("\nNext:\n");
    if (cfg->as && access(pw, F_OK) != 0)
        printf("  users who may sign in (readable by the web server, outside the document "
               "root):\n"
               "    htpasswd -c %s USER     (or: printf 'USER:%%s\\n' \"$(openssl passwd -apr1)\" "
               ">> %s)\n", pw, pw);
    if (cfg->as) {
        char db[PATH_MAX];
        if (path_in(db, sizeof db, cfg->as->state_dir, "mcpauth.db") == 0 && access(db, F_OK) != 0)
            printf("  keys and database:  %s/" PROG " init\n", SBINDIR);
    }
    for (size_t i = 0; i < cfg->nresources; i++)
        printf("  check:  %s/" PROG " site-check %s\n", SBINDIR, cfg->resources[i].uri);
    rc = 0;
out:
    for (size_t i = 0; i < nfiles; i++)
        free(files[i].text);
    free(origin);
    return rc;
}

/* ---------------------------------------------------------- site-check */

typedef struct {
    long status;
    char www_auth[1024];
    char content_type[128];
    char body[16384];
    size_t body_len;
    char error[CURL_ERROR_SIZE];
} http_answer;

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    http_answer *a = arg;
    size_t len = size * n;
    struct {
        const char *name;
        char *out;
        size_t cap;
    } want[] = {{"www-authenticate:", a->www_auth, sizeof a->www_auth},
                {"content-type:", a->content_type, sizeof a->content_type}};
    if (len > 5 && strncmp(p, "HTTP/", 5) == 0) /* a new response (after 100) */
        a->www_auth[0] = a->content_type[0] = '\0';
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(want[i].name);
        if (len > k && strncasecmp(p, want[i].name, k) == 0 && !want[i].out[0]) {
            const char *v = p + k;
            size_t vl = len - k;
            while (vl && (*v == ' ' || *v == '\t'))
                v++, vl--;
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
                vl--;
            snprintf(want[i].out, want[i].cap, "%.*s", (int)vl, v);
        }
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    http_answer *a = arg;
    size_t len = size * n, room = sizeof a->body - 1 - a->body_len;
    memcpy(a->body + a->body_len, p, len < room ? len : room);
    a->body_len += len < room ? len : room;
    a->body[a->body_len] = '\0';
    return len;
}

/* One request; status 0 when there was no answer (a->error says why). */
static void http_do(const char *url, const char *method, const char *auth, const char *form,
                    const char *ca_file, http_answer *a)
{
    memset(a, 0, sizeof *a);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(a->error, sizeof a->error, "cannot initialise libcurl");
        return;
    }
    struct curl_slist *hdr = NULL;
    char line[600];
    hdr = curl_slist_append(hdr, "Accept: application/json, text/event-stream");
    if (auth) {
        snprintf(line, sizeof line, "Authorization: %s", auth);
        hdr = curl_slist_append(hdr, line);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->error);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, PROG "-site-check/" MCPAUTH_VERSION);
    if (ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    if (form) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
    } else if (method && strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    else if (!a->error[0])
        snprintf(a->error, sizeof a->error, "no answer");
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
}

typedef struct {
    int failed;
} report;

static void report_ok(report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_ok(report *r, const char *fmt, ...)
{
    (void)r;
    va_list ap;
    fputs("ok    ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* A problem and its fix, on separate lines. */
static void report_fail(report *r, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report_fail(report *r, const char *fix, const char *fmt, ...)
{
    va_list ap;
    r->failed++;
    fputs("FAIL  ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    if (fix)
        printf("      fix: %s\n", fix);
}

/* The first line of a body, made printable, for messages. */
static const char *body_hint(const http_answer *a)
{
    static char buf[160];
    size_t i = 0;
    for (const char *p = a->body; *p && *p != '\n' && i < sizeof buf - 1; p++)
        buf[i++] = (unsigned char)*p < ' ' || (unsigned char)*p > '~' ? '?' : *p;
    buf[i] = '\0';
    return buf;
}

/* Why a program's URL did not reach it, from what answered instead. */
static void explain(report *r, const char *what, const char *url, const http_answer *a,
                    const char *folder_htaccess)
{
    char fix[1024];
    if (a->status == 0) {
        snprintf(fix, sizeof fix, "is the host name right and the site up? (%s)", a->error);
        report_fail(r, fix, "%s: no answer from %s", what, url);
    } else if (strncmp(a->body, "#!", 2) == 0) {
        snprintf(fix, sizeof fix, "the host sent the wrapper script as a file: the handler line "
                 "of %s (AddHandler fcgid-script .fcgi, or AddHandler cgi-script .cgi) is not "
                 "active.  It needs AllowOverride FileInfo and mod_fcgid (or mod_cgi); without "
                 "mod_fcgid run `" PROG " site --mode cgi`", folder_htaccess);
        report_fail(r, fix, "%s: %s answered %ld with the script's text", what, url, a->status);
    } else if (a->status == 404) {
        snprintf(fix, sizeof fix, "the rewrite rules did not run: is %s there, and does the host "
                 "allow it (AllowOverride FileInfo) and load mod_rewrite?  Or the URL is not "
                 "one of mcpauth.conf (the program answers 404 for those too)", folder_htaccess);
        report_fail(r, fix, "%s: %s answered 404", what, url);
    } else if (a->status == 403) {
        snprintf(fix, sizeof fix, "the host refuses to run the wrapper: `Options +ExecCGI` in "
                 "%s needs AllowOverride Options=ExecCGI (ask the host), and the wrappers and "
                 "folders must be mode 755, owned by you (suEXEC)", folder_htaccess);
        report_fail(r, fix, "%s: %s answered 403 Forbidden", what, url);
    } else if (a->status == 500 || a->status == 503) {
        snprintf(fix, sizeof fix, "the web server's error log says which: a line of %s the host "
                 "does not allow (\"... not allowed here\"), a wrapper that cannot run (suEXEC "
                 "refuses files writable by group or others), or a program that cannot start "
                 "(run `" PROG " site-check` on the host to check the configuration, state and "
                 "keys)", folder_htaccess);
        report_fail(r, fix, "%s: %s answered %ld: %s", what, url, a->status, body_hint(a));
    } else {
        report_fail(r, NULL, "%s: %s answered %ld (%s): %s", what, url, a->status,
                    a->content_type[0] ? a->content_type : "no content type", body_hint(a));
    }
}

/* The value of param="..." in a challenge, or "" */
static void auth_param(const char *challenge, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    size_t n = strlen(name);
    for (const char *p = challenge; (p = strstr(p, name)); p += n) {
        if ((p == challenge || p[-1] == ' ' || p[-1] == ',') && p[n] == '=' && p[n + 1] == '"') {
            const char *v = p + n + 2, *e = strchr(v, '"');
            if (e)
                snprintf(out, len, "%.*s", (int)(e - v), v);
            return;
        }
    }
}

static json_object *json_body(const http_answer *a)
{
    json_object *o = a->status == 200 ? json_tokener_parse(a->body) : NULL;
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/* The built-in AS as seen from outside: metadata, key set, token endpoint,
 * sign-in. */
static void check_as(report *r, const char *issuer, const char *ca_file, const char *htaccess)
{
    char *origin = NULL, *path = NULL, url[2048];
    const char *why;
    char *canon = mcpauth__uri_canonicalize(issuer, MCPAUTH_URI_KEEP_SLASH, &why);
    if (!canon) {
        report_fail(r, NULL, "authorization server %s: %s", issuer, why);
        return;
    }
    mcpauth__uri_split(canon, &origin, &path);
    free(canon);
    size_t pl = strlen(path);
    while (pl && path[pl - 1] == '/')
        path[--pl] = '\0';
    http_answer a;
    json_object *md = NULL;
    for (int i = 0; i < 2 && !md; i++) {
        snprintf(url, sizeof url, "%s/.well-known/%s%s", origin,
                 i == 0 ? "oauth-authorization-server" : "openid-configuration", path);
        http_do(url, "GET", NULL, NULL, ca_file, &a);
        md = json_body(&a);
    }
    if (!md) {
        report_fail(r, "the rule for oauth-authorization-server in /.well-known/.htaccess is "
                    "missing or not read, or mcpauth-metadata cannot start (500: error log)",
                    "authorization server metadata: %s answered %ld", url, a.status);
        goto out;
    }
    const char *iss = jstr(md, "issuer");
    if (!iss || strcmp(iss, issuer) != 0) {
        report_fail(r, "the metadata must name exactly the issuer the resource lists",
                    "authorization server metadata at %s names issuer %s, not %s", url,
                    iss ? iss : "(none)", issuer);
        goto out;
    }
    report_ok(r, "authorization server metadata: %s", url);
    const char *jwks = jstr(md, "jwks_uri"), *token = jstr(md, "token_endpoint"),
               *authz = jstr(md, "authorization_endpoint");
    char fix[1024];
    if (jwks) {
        http_do(jwks, "GET", NULL, NULL, ca_file, &a);
        json_object *k = json_body(&a), *keys;
        if (k && json_object_object_get_ex(k, "keys", &keys) &&
            json_object_array_length(keys) > 0)
            report_ok(r, "signing keys published (mcpauth-as reads its state): %s", jwks);
        else if (a.status == 500 || a.status == 503)
            report_fail(r, "mcpauth-as cannot start as the web server runs it: its line in the "
                        "error log says why; run `" PROG " init` and `" PROG " site-check` as the "
                        "user the host runs your scripts as",
                        "key set: %s answered %ld", jwks, a.status);
        else
            explain(r, "key set", jwks, &a, htaccess);
        json_object_put(k);
    }
    if (token) {
        http_do(token, "POST", NULL, "grant_type=mcpauth_site_check", ca_file, &a);
        /* 400 (unsupported_grant_type) or 401 (invalid_client): it answered */
        json_object *e = a.status == 400 || a.status == 401 ? json_tokener_parse(a.body) : NULL;
        if (e && jstr(e, "error"))
            report_ok(r, "token endpoint answers (%s)", token);
        else
            explain(r, "token endpoint", token, &a, htaccess);
        json_object_put(e);
    }
    if (authz) {
        http_do(authz, "GET", NULL, NULL, ca_file, &a);
        if (a.status == 401 && strncasecmp(a.www_auth, "Basic", 5) == 0) {
            report_ok(r, "sign-in required at %s (Basic)", authz);
        } else if (a.status == 500) {
            snprintf(fix, sizeof fix, "the <Files mcpauth-as-login...> block of %s: the web "
                     "server cannot read its AuthUserFile (mode 644, outside the document root, "
                     "folders above it searchable), or mod_auth_basic / mod_authn_file are not "
                     "loaded (error log)", htaccess);
            report_fail(r, fix, "sign-in: %s answered 500", authz);
        } else if (a.status == 401 || a.status == 400 || a.status == 200) {
            snprintf(fix, sizeof fix, "the <Files mcpauth-as-login...> block of %s "
                     "(AuthType Basic ... Require valid-user) is not applied: it needs "
                     "AllowOverride AuthConfig", htaccess);
            report_fail(r, fix, "sign-in: %s answered %ld without asking for a password",
                        authz, a.status);
        } else {
            explain(r, "sign-in", authz, &a, htaccess);
        }
    }
out:
    json_object_put(md);
    free(origin);
    free(path);
}

/* The remote part: what a client sees at url. */
static void check_url(ctx *c, report *r, const char *url)
{
    const char *ca_file = c->cfg ? c->cfg->ca_file : NULL;
    char htaccess[PATH_MAX + 32] = "the .htaccess of the MCP folder";
    char *origin = NULL, *path = NULL;
    const char *why;
    char *canon = mcpauth__uri_canonicalize(url, 0, &why);
    if (!canon) {
        report_fail(r, NULL, "%s: %s", url, why);
        return;
    }
    mcpauth__uri_split(canon, &origin, &path);
    const mcpauth_resource *res = c->cfg ? mcpauth_config_resource_by_uri(c->cfg, canon) : NULL;
    const char *slash = strrchr(path, '/');
    if (slash && slash != path)
        snprintf(htaccess, sizeof htaccess, "%.*s/.htaccess (in the document root)",
                 (int)(slash - path), path);

    printf("-- %s\n", canon);
    http_answer a;
    http_do(canon, "GET", NULL, NULL, ca_file, &a);
    char rm[1024] = "";
    if (a.status == 401 && strncasecmp(a.www_auth, "Bearer", 6) == 0) {
        auth_param(a.www_auth, "resource_metadata", rm, sizeof rm);
        report_ok(r, "the MCP URL answers 401 with a Bearer challenge (mcpauth-proxy runs)");
    } else if (a.status == 401) {
        report_fail(r, "a password protection of the host or of a .htaccess above covers this "
                    "folder; exempt it (MCP clients send Bearer tokens)",
                    "the MCP URL asks for %s, not a Bearer token",
                    a.www_auth[0] ? a.www_auth : "credentials");
    } else {
        explain(r, "MCP URL", canon, &a, htaccess);
    }

    /* Metadata: where the challenge points, else where clients look. */
    if (!rm[0])
        snprintf(rm, sizeof rm, "%s/.well-known/oauth-protected-resource%s", origin, path);
    http_do(rm, "GET", NULL, NULL, ca_file, &a);
    json_object *prm = json_body(&a), *as_list = NULL;
    const char *resource = jstr(prm, "resource");
    const char *issuer = NULL;
    if (resource && strcmp(resource, canon) == 0) {
        report_ok(r, "protected resource metadata: %s", rm);
        if (json_object_object_get_ex(prm, "authorization_servers", &as_list) &&
            json_object_array_length(as_list) > 0)
            issuer = json_object_get_string(json_object_array_get_idx(as_list, 0));
    } else if (resource) {
        report_fail(r, "the resource's uri in mcpauth.conf must be exactly the MCP URL clients "
                    "use", "protected resource metadata at %s is for %s, not %s", rm, resource,
                    canon);
    } else if (a.status == 404 || strncmp(a.body, "#!", 2) == 0 || a.status == 403) {
        explain(r, "protected resource metadata", rm, &a,
                "/.well-known/.htaccess (in the document root)");
    } else {
        explain(r, "protected resource metadata", rm, &a, htaccess);
    }

    /* A well-formed but unknown token: "invalid_token" proves the header
     * reached the proxy; a bare challenge means it was withheld. */
    http_do(canon, "GET", "Bearer x.y.z", NULL, ca_file, &a);
    char err[64];
    auth_param(a.www_auth, "error", err, sizeof err);
    char fix[1024];
    if (a.status == 401 && strcmp(err, "invalid_token") == 0) {
        report_ok(r, "the Authorization header reaches the programs");
    } else if (a.status == 401 && !err[0]) {
        snprintf(fix, sizeof fix, "Apache withholds the Authorization header from the programs: "
                 "%s needs `CGIPassAuth On` (Apache 2.4.13 or later, AllowOverride AuthConfig) "
                 "or the fallback `RewriteRule ... [E=HTTP_AUTHORIZATION:%%{HTTP:Authorization}]` "
                 "(mod_rewrite); if both are there, ask the host to pass Authorization to CGI "
                 "and FastCGI scripts (CGIPassAuth On for your folder)", htaccess);
        report_fail(r, fix, "the Authorization header does not reach mcpauth-proxy (401 "
                    "without error=\"invalid_token\" for a token it was sent)");
    } else if (a.status != 0 && a.status != 401) {
        report_fail(r, NULL, "a request with a token answered %ld, not 401", a.status);
    }

    if (issuer) {
        if (c->cfg && c->cfg->as && strcmp(c->cfg->as->issuer, issuer) == 0)
            check_as(r, issuer, ca_file, htaccess);
        else
            printf("      (authorization server %s is not this configuration's own; its "
                   "endpoints are not checked)\n", issuer);
    }
    if (c->cfg && !res)
        printf("note  %s is not the uri of a [resource] in %s\n", canon, c->cfg->file);
    json_object_put(prm);
    free(canon);
    free(origin);
    free(path);
}

/* The local part: what the programs need, checked as this user (run it as
 * the user the host runs your scripts as). */
static void check_local(ctx *c, report *r)
{
    const char *file = c->config_file && *c->config_file ? c->config_file
                                                         : mcpauth_config_default_file();
    char err[512];
    if (!(c->cfg = mcpauth_config_load(file, err, sizeof err))) {
        report_fail(r, "the programs refuse to start with it: fix the line named",
                    "configuration: %s", err);
        return;
    }
    report_ok(r, "configuration %s loads (%zu resource%s)", file, c->cfg->nresources,
              c->cfg->nresources == 1 ? "" : "s");
    struct stat st;
    if (stat(file, &st) == 0 && (st.st_mode & 004))
        printf("note  %s is readable by every user of this host; with secrets in it "
               "(backend_authorization, client secrets) make it chmod 600\n", file);
    const char *rt = c->cfg->runtime_dir;
    if (rt) {
        if (access(rt, W_OK | X_OK) == 0)
            report_ok(r, "runtime_dir %s is writable", rt);
        else
            report_fail(r, "run `" PROG " init` (creates it) as the user the host runs your "
                        "scripts as", "runtime_dir %s: %s", rt, strerror(errno));
    }
    if (!c->cfg->as)
        return;
    const char *sd = c->cfg->as->state_dir;
    char db[PATH_MAX];
    if (access(sd, W_OK | X_OK) != 0) {
        report_fail(r, "run `" PROG " init` as the user the host runs your scripts as",
                    "state_dir %s: %s", sd, strerror(errno));
        return;
    }
    if (path_in(db, sizeof db, sd, "mcpauth.db") < 0 || access(db, R_OK | W_OK) != 0) {
        report_fail(r, "run `" PROG " init`", "database %s: %s", db, strerror(errno));
        return;
    }
    unsigned char secret[MCPAUTH_SECRET_BYTES];
    if (mcpauth__secret_load(sd, secret, err, sizeof err) < 0) {
        report_fail(r, "run `" PROG " init`", "server secret: %s", err);
        return;
    }
    memset(secret, 0, sizeof secret);
    mcpauth_store *s = mcpauth__store_open(sd, err, sizeof err);
    if (!s) {
        report_fail(r, NULL, "database: %s", err);
        return;
    }
    mcpauth_signer *k = mcpauth__keys_load_current(s, err, sizeof err);
    if (k)
        report_ok(r, "state_dir %s: database, secret and signing key readable", sd);
    else
        report_fail(r, "run `" PROG " init` (or `" PROG " rotate-key`)", "signing key: %s", err);
    mcpauth__signer_free(k);
    mcpauth__store_close(s);
}

static int cmd_site_check(ctx *c)
{
    int nurls = 0;
    for (int i = 1; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--") == 0)
            continue;
        if (c->argv[i][0] == '-')
            return usage_error("site-check: unknown option \"%s\"", c->argv[i]);
        nurls++;
    }
    report r = {0};
    printf("-- this host, as %s\n", getpwuid(geteuid()) ? getpwuid(geteuid())->pw_name : "?");
    check_local(c, &r);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (nurls == 0 && c->cfg)
        for (size_t i = 0; i < c->cfg->nresources; i++)
            check_url(c, &r, c->cfg->resources[i].uri);
    for (int i = 1; i < c->argc; i++)
        if (strcmp(c->argv[i], "--") != 0)
            check_url(c, &r, c->argv[i]);
    curl_global_cleanup();
    printf("%s: %d problem%s\n", r.failed ? "FAILED" : "OK", r.failed, r.failed == 1 ? "" : "s");
    return r.failed ? 1 : 0;
}

/* ------------------------------------------------------------------- main */

/* Global options: before the command, or among its arguments (up to a
 * "--"); everything else is the command's, into c->argv.  Returns -1 to go
 * on, else the exit status. */
static int parse_args(ctx *c, int argc, char **argv)
{
    int nargs = 0, ended = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (ended || (nargs > 0 && a[0] != '-')) {
            c->argv[nargs++] = argv[i];
        } else if ((r = opt_value(argv, argc, &i, "--config", &c->config_file)) != 0) {
            if (r < 0 || !*c->config_file)
                return usage_error("--config needs a file");
            c->config_given = 1;
        } else if ((r = opt_value(argv, argc, &i, "--state-dir", &c->state_dir_opt)) != 0) {
            if (r < 0 || !*c->state_dir_opt)
                return usage_error("--state-dir needs a directory");
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf(PROG " %s\n", MCPAUTH_VERSION);
            return 0;
        } else if (nargs == 0 && a[0] == '-') {
            return usage_error("unknown option \"%s\"", a);
        } else {
            c->argv[nargs++] = argv[i];
            ended = strcmp(a, "--") == 0;
        }
    }
    if (nargs == 0)
        return usage_error("no command given");
    c->argc = nargs;
    return -1;
}

static int run(ctx *c)
{
    umask(077); /* the database, its -wal and -shm files, keys: owner only */
    mcpauth_log_init(PROG, MCPAUTH_LOG_WARN);
    const char *cmd = c->argv[0];
    if (strcmp(cmd, "init") == 0)
        return cmd_init(c);
    if (strcmp(cmd, "rotate-key") == 0)
        return cmd_rotate_key(c);
    if (strcmp(cmd, "keys") == 0)
        return cmd_keys(c);
    if (strcmp(cmd, "clients") == 0)
        return cmd_clients(c);
    if (strcmp(cmd, "revoke") == 0)
        return cmd_revoke(c);
    if (strcmp(cmd, "purge") == 0)
        return cmd_purge(c);
    if (strcmp(cmd, "site") == 0)
        return cmd_site(c);
    if (strcmp(cmd, "site-check") == 0)
        return cmd_site_check(c);
    return usage_error("unknown command \"%s\"", cmd);
}

int main(int argc, char **argv)
{
    ctx c;
    memset(&c, 0, sizeof c);
    c.config_file = getenv("MCPAUTH_CONFIG");
    if (!(c.argv = calloc((size_t)argc + 1, sizeof *c.argv))) {
        fail("out of memory");
        return 1;
    }
    int rc = parse_args(&c, argc, argv);
    if (rc < 0)
        rc = run(&c);
    mcpauth_config_free(c.cfg);
    free(c.argv);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fail("cannot write the output: %s", strerror(errno));
        rc = 1;
    }
    return rc;
}
