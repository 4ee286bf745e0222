/* Canonical resource URIs; parsing is libcurl's URL API, the rules are ours. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "uri.h"

#include "alloc.h"

int mcpauth__uri_host_is_loopback(const char *host)
{
    char buf[64];
    size_t len = strlen(host);
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        if (len - 2 >= sizeof buf)
            return 0;
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        host = buf;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* "." or ".." as a whole segment: resolving them would change which resource
 * a URI names, so such input is refused rather than silently rewritten. */
static int has_dot_segment(const char *path)
{
    for (const char *p = path; (p = strchr(p, '/')) != NULL; p++) {
        const char *s = p + 1;
        size_t n = strcspn(s, "/?#");
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 1;
    }
    return 0;
}

char *mcpauth__uri_canonicalize(const char *in, unsigned flags, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    if (!in || !*in) {
        *why = "is empty";
        return NULL;
    }
    size_t inlen = strlen(in);
    if (inlen > 2000) {
        *why = "is longer than 2000 characters";
        return NULL;
    }
    for (const char *p = in; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            *why = "contains a space, control or non-ASCII character";
            return NULL;
        }
    /* curl accepts "https:host" and other sloppy forms; demand the full one. */
    const char *sep = strstr(in, "://");
    size_t slen = sep ? (size_t)(sep - in) : 0;
    if (!sep || !((slen == 4 && strncasecmp(in, "http", 4) == 0) ||
                  (slen == 5 && strncasecmp(in, "https", 5) == 0))) {
        *why = "must be an absolute http:// or https:// URI";
        return NULL;
    }
    if (strchr("/?#", sep[3])) { /* also catches the empty authority */
        *why = "has no host";
        return NULL;
    }
    if (strchr(in, '#')) {
        *why = "must not have a fragment";
        return NULL;
    }
    if (strchr(in, '?') && !(flags & MCPAUTH_URI_ALLOW_QUERY)) {
        *why = "must not have a query";
        return NULL;
    }
    const char *pathstart = sep + 3 + strcspn(sep + 3, "/?");
    int has_path = *pathstart == '/';
    if (has_path && has_dot_segment(pathstart)) {
        *why = "must not contain \".\" or \"..\" path segments";
        return NULL;
    }

    /* curl decodes escapes in the host ("s%80" becomes the byte 0x80,
     * "%6cocalhost" localhost): a canonical URI names its host literally,
     * so no '%' in the authority at all (also IPv6 zone ids) */
    if (memchr(sep + 3, '%', strcspn(sep + 3, "/?#"))) {
        *why = "must not have an IPv6 zone or encoded host";
        return NULL;
    }

    CURLU *u = mcpauth__check(curl_url(), "CURLU");
    char *scheme = NULL, *user = NULL, *host = NULL, *port = NULL, *path = NULL,
         *query = NULL, *out = NULL;
    if (curl_url_set(u, CURLUPART_URL, in, 0) != CURLUE_OK) {
        *why = "is not a valid URI";
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        *why = "must not contain user information";
        goto done;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        *why = "is not a valid URI";
        goto done;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0); /* absent unless given */
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    if (strchr(host, '%')) {
        *why = "must not have an IPv6 zone or encoded host";
        goto done;
    }
    for (char *p = scheme; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    int https = strcmp(scheme, "https") == 0;
    if (!https && !(flags & MCPAUTH_URI_ANY_HTTP) && !mcpauth__uri_host_is_loopback(host)) {
        *why = "must use https (http is allowed only for loopback hosts)";
        goto done;
    }
    if (port) {
        char *end;
        long pn = strtol(port, &end, 10);
        if (*end || pn < 1 || pn > 65535) {
            *why = "has an invalid port";
            goto done;
        }
        if ((https && pn == 443) || (!https && pn == 80)) {
            curl_free(port);
            port = NULL;
        }
    }
    if (!has_path)
        path[0] = '\0'; /* curl reports "/" for an empty path */
    size_t plen = strlen(path);
    if (!(flags & MCPAUTH_URI_KEEP_SLASH))
        while (plen > 0 && path[plen - 1] == '/')
            path[--plen] = '\0';
    size_t cap = strlen(scheme) + strlen(host) + plen + (port ? strlen(port) : 0) +
                 (query ? strlen(query) : 0) + 8;
    out = mcpauth__xmalloc(cap);
    snprintf(out, cap, "%s://%s%s%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "",
             path, query ? "?" : "", query ? query : "");
done:
    curl_free(scheme);
    curl_free(user);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return out;
}

int mcpauth__uri_split(const char *canonical, char **origin, char **path)
{
    const char *sep = strstr(canonical, "://");
    if (!sep)
        return -1;
    const char *p = sep + 3 + strcspn(sep + 3, "/?");
    *origin = mcpauth__xstrndup(canonical, (size_t)(p - canonical));
    *path = mcpauth__xstrdup(p);
    return 0;
}
