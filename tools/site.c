/* mcpauth(8), shared hosting with no root (doc/shared-hosting.md):
 * `site` writes the .htaccess kit and the program wrappers into a
 * document root, `site-check` says whether a deployment works and, when
 * not, names the missing line or host feature. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include <mcpauth/config.h>
#include <mcpauth/mcpauth.h>

#include "alloc.h"
#include "db.h"
#include "keys.h"
#include "site.h"
#include "store.h"
#include "strbuf.h"
#include "uri.h"

/* ------------------------------------------------------------------ site */

/* The templates `site` fills, where make install puts them. */
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
 * backend, protected by the built-in authorization server at kit (the
 * URL of the kit's folder).  Below a ~user folder (userdir) the host's
 * /.well-known/ is not the user's: the challenges name metadata in the
 * kit's folder instead (RFC 9728 §5.1). */
static char *site_config(const char *kit, const char *resource, const char *backend,
                         int userdir)
{
    char md[PATH_MAX + 128] = "", more[PATH_MAX + 128] = "";
    if (userdir) {
        snprintf(md, sizeof md,
                 "resource_metadata_url = %s/.well-known/oauth-protected-resource/%s\n", kit,
                 resource);
        snprintf(more, sizeof more,
                 "# and, since the host's /.well-known/ is not yours,\n"
                 "# resource_metadata_url = %s/.well-known/oauth-protected-resource/NAME.\n",
                 kit);
    }
    char *s = NULL;
    if (asprintf(&s,
                 "# mcpauth.conf for %s, written by `" PROG " site`; every key is in\n"
                 "# mcpauth.conf(5).  More MCP servers: one [resource NAME] each, with\n"
                 "# uri = %s/NAME (the .htaccess needs no change)%s\n%s"
                 "\n"
                 "log_level = info\n"
                 "default_resource = %s\n"
                 "# Shared state of the processes (rate limits, sessions, revocations,\n"
                 "# caches); outside the document root.\n"
                 "runtime_dir = %s/lib/mcpauth/run\n"
                 "\n"
                 "[resource %s]\n"
                 "uri = %s/%s\n"
                 "%s"
                 "resource_name = %s\n"
                 "authorization_servers = %s\n"
                 "backend = %s\n"
                 "\n"
                 "# The built-in authorization server; users sign in with the web\n"
                 "# server's Basic auth (the htpasswd file of the .htaccess).\n"
                 "[authorization_server]\n"
                 "issuer = %s\n"
                 "state_dir = %s/lib/mcpauth/state\n",
                 kit, kit, userdir ? "" : ".", more, resource, LOCALSTATEDIR, resource, kit, resource, md, resource,
                 kit, backend, kit, LOCALSTATEDIR) < 0)
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

int cmd_site(ctx *c)
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

    /* The site's URL: an origin, or a folder of one (https://host/~user,
     * whose document root is --docroot).  In a folder the host's
     * /.well-known/ is not ours: the metadata goes below the kit. */
    const char *why;
    char *site = mcpauth__uri_canonicalize(url, 0, &why);
    if (!site)
        return usage_error("--url \"%s\": %s", url, why);
    char *origin = NULL, *upath = NULL;
    mcpauth__uri_split(site, &origin, &upath);
    free(site);
    int haspath = upath[0] != '\0';
    char urlbase[600], kit[PATH_MAX];
    if ((haspath && check_site_path(upath) < 0) ||
        snprintf(urlbase, sizeof urlbase, "%s%s", upath, base) >= (int)sizeof urlbase ||
        snprintf(kit, sizeof kit, "%s%s", origin, urlbase) >= (int)sizeof kit) {
        fail("--url %s: the site's origin (https://host) or a folder of it whose document "
             "root is --docroot (https://host/~user: letters, digits, - . _ ~)", url);
        free(origin);
        free(upath);
        return 1;
    }
    free(upath);

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
        char *text = site_config(kit, resource, backend, haspath);
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

    /* The .htaccess routes BASE/NAME to the proxy, BASE/oauth2/ to the AS
     * and BASE/.well-known/ (and, at an origin, /.well-known/) to the
     * metadata: the configuration must agree. */
    char want[PATH_MAX + 2], kitmd[PATH_MAX + 64], rootmd[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/", kit);
    snprintf(kitmd, sizeof kitmd, "%s" MCPAUTH_PRM_WELL_KNOWN "/", kit);
    snprintf(rootmd, sizeof rootmd, "%s" MCPAUTH_PRM_WELL_KNOWN "/", origin);
    int mismatch = 0;
    for (size_t i = 0; i < cfg->nresources; i++) {
        const mcpauth_resource *r = &cfg->resources[i];
        if (strncmp(r->uri, want, strlen(want)) != 0 || !r->uri[strlen(want)] ||
            strncmp(r->uri + strlen(want), "oauth2", 6) == 0 ||
            strncmp(r->uri + strlen(want), ".well-known", 11) == 0) {
            fail("%s: [resource %s] uri = %s is not below %s (where this kit serves MCP "
                 "endpoints): make it %s%s", cfg->file, r->name, r->uri, want, want, r->name);
            mismatch = 1;
        } else if (strncmp(r->metadata_url, kitmd, strlen(kitmd)) != 0 &&
                   (haspath || strncmp(r->metadata_url, rootmd, strlen(rootmd)) != 0)) {
            fail("%s: [resource %s]: the challenges send clients to %s for its metadata, which "
                 "this kit does not serve%s: add resource_metadata_url = %s%s", cfg->file,
                 r->name, r->metadata_url,
                 haspath ? " (the host's /.well-known/ is not yours)" : "", kitmd,
                 r->uri + strlen(want));
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
                 "server at %s/oauth2/; make it issuer = %s (and the resources' "
                 "authorization_servers too)", cfg->file, cfg->as->issuer, kit, kit);
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
        const char *names[] = {"MCPAUTH_BASE", "MCPAUTH_URLBASE", "MCPAUTH_EXT",
                               "MCPAUTH_HTPASSWD", "MCPAUTH_TEMPLATE"};
        /* in a ~user folder, /.well-known/ of the folder is no one's */
        path_in(tfile, sizeof tfile, tdir, tnames[0]);
        const char *v0[] = {base, urlbase, ext, pw, tfile};
        if (!haspath)
            ok = ok && kit_add(&files[nfiles++], wk, ".htaccess",
                               fill(tmpl[0], names, v0, 5, tfile), 0644) == 0;
        path_in(tfile, sizeof tfile, tdir, tnames[1]);
        const char *v1[] = {base, urlbase, ext, pw, tfile};
        ok = ok && kit_add(&files[nfiles++], dir, ".htaccess", fill(tmpl[1], names, v1, 5, tfile),
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
    const char *mk[] = {dir, wk};
    for (int i = 0; i < (haspath ? 1 : 2); i++)
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
    /* where MCP clients look, in their order; the last one is the only
     * one a ~user folder can serve */
    for (int i = 0; i < 3 && !md; i++) {
        if (i < 2)
            snprintf(url, sizeof url, "%s/.well-known/%s%s", origin,
                     i == 0 ? "oauth-authorization-server" : "openid-configuration", path);
        else
            snprintf(url, sizeof url, "%s%s/.well-known/openid-configuration", origin, path);
        http_do(url, "GET", NULL, NULL, ca_file, &a);
        md = json_body(&a);
    }
    if (!md) {
        report_fail(r, "the rule for oauth-authorization-server in /.well-known/.htaccess (at a "
                    "~user URL: the .well-known rule of the kit's .htaccess) is missing or not "
                    "read, or mcpauth-metadata cannot start (500: error log)",
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
    } else if ((a.status == 404 || strncmp(a.body, "#!", 2) == 0 || a.status == 403) &&
               strncmp(rm, origin, strlen(origin)) == 0 &&
               strncmp(rm + strlen(origin), "/.well-known/", 13) == 0) {
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
    if (!mcpauth__db_is_pg(c->cfg->as->store) &&
        (path_in(db, sizeof db, sd, "mcpauth.db") < 0 || access(db, R_OK | W_OK) != 0)) {
        report_fail(r, "run `" PROG " init`", "database %s: %s", db, strerror(errno));
        return;
    }
    mcpauth_store *s = mcpauth__store_open(sd, c->cfg->as->store, err, sizeof err);
    if (!s) {
        report_fail(r, NULL, "database: %s", err);
        return;
    }
    unsigned char secret[MCPAUTH_SECRET_BYTES];
    if (mcpauth__secret_load(s, sd, secret, err, sizeof err) < 0) {
        report_fail(r, "run `" PROG " init`", "server secret: %s", err);
        mcpauth__store_close(s);
        return;
    }
    memset(secret, 0, sizeof secret);
    mcpauth_signer *k = mcpauth__keys_load_current(s, err, sizeof err);
    if (k)
        report_ok(r, "state_dir %s: database, secret and signing key readable", sd);
    else
        report_fail(r, "run `" PROG " init` (or `" PROG " rotate-key`)", "signing key: %s", err);
    mcpauth__signer_free(k);
    mcpauth__store_close(s);
}

int cmd_site_check(ctx *c)
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
