/* mcpauth(8): administration of the built-in authorization server's state
 * directory: set-up, signing-key rotation, clients, revocation, upkeep;
 * the shared-hosting commands (site, site-check) are in site.c.
 * Thin on purpose: the logic lives in lib/store.c and lib/keys.c. */
#include "config.h"

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

#include <json-c/json.h>

#include <mcpauth/config.h>
#include <mcpauth/log.h>
#include <mcpauth/mcpauth.h>

#include "db.h"
#include "keys.h"
#include "revoked.h"
#include "site.h"
#include "status.h"
#include "store.h"

/* The [authorization_server] section of mcpauth.conf(5). */
#define CFG_STATE_DIR(c) ((c)->as ? (c)->as->state_dir : NULL)
#define CFG_SIGNING_ALG(c) ((c)->as ? (c)->as->signing_alg : NULL)
#define CFG_TOKEN_TTL(c) ((c)->as ? (c)->as->access_token_ttl : 0L)

#define DEFAULT_ALG "ES256"
#define DEFAULT_KEY_RETENTION 86400L

void fail(const char *fmt, ...)
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
            "  migrate               create the database's tables or bring them up to date\n"
            "                        after an upgrade (store = PostgreSQL needs it)\n"
            "  keys                  list the signing keys still recorded\n"
            "  status                the live figures (metrics), program versions,\n"
            "                        configuration file, key ages and next key expiry\n"
            "  clients list          one line per client: client_id, kind, name, created,\n"
            "                        authentication method (tab separated)\n"
            "  clients show ID       every field of a client\n"
            "  clients delete ID     delete a client and everything issued to it\n"
            "  revoke --user USER | --client ID\n"
            "                        revoke their refresh-token families\n"
            "  purge [--key-retention SECONDS]\n"
            "                        delete expired codes, tokens, and keys retired longer\n"
            "                        than SECONDS (default %ld, or access_token_ttl if longer)\n"
            "  site --docroot DIR --url https://HOST[/~USER] [--path /mcp] [--mode fcgid|cgi]\n"
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

int usage_error(const char *fmt, ...)
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

int load_config(ctx *c)
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

int path_in(char *out, size_t len, const char *dir, const char *name)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* mkdir -p with mode for what it creates. */
int make_dirs(const char *dir, mode_t mode, int *created)
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
    /* Run as root in a directory the web server's user owns: that user
     * could have made keys/ a symbolic link to somewhere root's files
     * live, so it is opened without following one, and the .pem files are
     * changed relative to what was opened (fchownat does not follow a link
     * in the last component either). */
    char keys[PATH_MAX];
    if (path_in(keys, sizeof keys, dir, "keys") < 0)
        return -1;
    int kfd = open(keys, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (kfd < 0)
        return errno == ENOENT ? 0 : (fail("%s: %s", keys, strerror(errno)), -1);
    DIR *d = fdopendir(kfd);
    if (!d) {
        close(kfd);
        return fail("%s: %s", keys, strerror(errno)), -1;
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".pem") == 0 &&
            fchownat(dirfd(d), de->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
            fail("cannot change the owner of %s/%s: %s", keys, de->d_name, strerror(errno));
            rc = -1;
        }
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

/* The store setting of [authorization_server] (NULL: SQLite). */
#define STORE_OF(c) ((c)->cfg && (c)->cfg->as ? (c)->cfg->as->store : NULL)

static mcpauth_store *open_store(ctx *c)
{
    char err[512];
    mcpauth_store *s = mcpauth__store_open(c->state_dir, STORE_OF(c), err, sizeof err);
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
    if (!mcpauth__db_is_pg(STORE_OF(c)) &&
        (path_in(db, sizeof db, c->state_dir, "mcpauth.db") < 0 || access(db, F_OK) < 0)) {
        fail("%s/mcpauth.db does not exist (run `" PROG " init`)", c->state_dir);
        return NULL;
    }
    return open_store(c);
}

/* Creates or upgrades the tables; the one way to upgrade PostgreSQL. */
static int cmd_migrate(ctx *c)
{
    if (c->argc > 1)
        return usage_error("migrate: unknown argument \"%s\"", c->argv[1]);
    if (resolve_state_dir(c) < 0 || absolute_state_dir(c) < 0 || become_owner(c->state_dir) < 0)
        return 1;
    char err[512];
    int from = 0, to = 0;
    if (mcpauth__store_migrate(c->state_dir, STORE_OF(c), &from, &to, err, sizeof err) < 0) {
        fail("%s", err);
        return 1;
    }
    if (from == to)
        printf("database schema is up to date (version %d)\n", to);
    else if (from == 0)
        printf("created the tables (schema version %d)\n", to);
    else
        printf("upgraded the database schema from version %d to %d\n", from, to);
    return 0;
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
int opt_value(char **argv, int argc, int *i, const char *name, const char **out)
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

/* shared_state is Redis: the list lives there, no file in runtime_dir. */
static int revoked_in_redis(const mcpauth_config *cfg)
{
    return cfg && cfg->shared_state && strcmp(cfg->shared_state, "shm") != 0;
}

/* Opens (creating) the revocation list at path and pushes the store's
 * revoked grants into it.  0, or -1 with a reason in err. */
static int sync_revoked(mcpauth_store *s, const mcpauth_config *cfg, const char *path, char *err,
                        size_t errlen)
{
    mcpauth__revoked *r = revoked_in_redis(cfg) ? mcpauth__revoked_open(cfg, 1, err, errlen)
                                                : mcpauth__revoked_open_rw(path, MCPAUTH__REVOKED_SLOTS, err, errlen);
    long pending = 0;
    int rc = r && mcpauth__revoked_sync(r, s, time(NULL), &pending) >= 0 ? 0 : -1;
    if (r && rc < 0 && pending > 0)
        snprintf(err, errlen, "%ld revoked token%s could not be written to it, %s; %s "
                 "pending in the store",
                 pending, pending == 1 ? "" : "s",
                 revoked_in_redis(cfg) ? "Redis is unreachable" : "the file is not writable",
                 pending == 1 ? "it stays" : "they stay");
    else if (r && rc < 0)
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
    if (sync_revoked(s, c->cfg, path, err, sizeof err) < 0)
        fprintf(stderr, PROG ": warning: revocation list %s: %s\n",
                revoked_in_redis(c->cfg) ? "(shared_state)" : path, err);
    else if (revoked_in_redis(c->cfg))
        printf("filled the revocation list in shared_state (Redis)\n");
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
    int shared = mcpauth__store_shared(s);
    if (shared)
        printf("opened the PostgreSQL database (tables created when missing)\n");
    else
        printf("%s database %s\n", had_db ? "opened" : "created", db);

    int rc = 1;
    char err[512];
    int made = mcpauth__secret_create(s, c->state_dir, err, sizeof err);
    if (made < 0) {
        fail("%s", err);
        goto out;
    }
    if (shared)
        printf("%s server secret in the database\n", made ? "created" : "kept");
    else
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
        if (shared)
            printf("created signing key %s (%s) in the database\n", kid, a);
        else
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

/* For `mcpauth status`: each key's age; a retired key is published until
 * its tokens have expired (retired + access_token_ttl), the next expiry. */
typedef struct {
    time_t now, next;
    long ttl;
    int n;
} key_ages;

static int age_key(const mcpauth_keyinfo *k, void *arg)
{
    key_ages *a = arg;
    char t[32];
    printf("  %s %s created %s (%ld days ago), ", k->kid, k->alg,
           iso_time(k->created, t, sizeof t), (long)((a->now - k->created) / 86400));
    if (!k->retired) {
        printf("current\n");
    } else {
        time_t until = k->retired + a->ttl;
        printf("retired, published until %s\n", iso_time(until, t, sizeof t));
        if (until > a->now && (!a->next || until < a->next))
            a->next = until;
    }
    a->n++;
    return 0;
}

int status_keys(ctx *c)
{
    mcpauth_store *s = open_existing(c);
    if (!s)
        return -1;
    key_ages a = {time(NULL), 0, CFG_TOKEN_TTL(c->cfg), 0};
    int rc = mcpauth__store_key_list(s, a.now - a.ttl, age_key, &a);
    mcpauth__store_close(s);
    if (rc < 0) {
        fail("cannot read the signing keys from the database");
        return -1;
    }
    char t[32];
    if (!a.n)
        printf("  none (run `" PROG " init`)\n");
    printf("next key expiry: %s\n", a.next ? iso_time(a.next, t, sizeof t)
                                           : "none (the current key has no expiry; "
                                             "`" PROG " rotate-key` makes a new one)");
    return 0;
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
    if (!revoked_in_redis(c->cfg) && access(path, F_OK) != 0) {
        fprintf(stderr, PROG ": note: %s does not exist yet; mcpauth-as creates it\n", path);
        return;
    }
    if (sync_revoked(s, c->cfg, path, err, sizeof err) < 0)
        fprintf(stderr, PROG ": warning: cannot update %s (%s): the gate and proxy see these "
                "revocations when mcpauth-as next revokes or starts\n",
                revoked_in_redis(c->cfg) ? "the revocation list in shared_state (Redis)" : path,
                err);
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
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(c);
    if (strcmp(cmd, "keys") == 0)
        return cmd_keys(c);
    if (strcmp(cmd, "clients") == 0)
        return cmd_clients(c);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(c);
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
