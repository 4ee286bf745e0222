/* Outgoing HTTP over libcurl.  Everything that comes back is hostile: the
 * body is bounded while it arrives, headers are bounded and parsed strictly,
 * nothing is followed and nothing from the peer reaches err unfiltered. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <mcpauth/mcpauth.h>
#include "uri.h"

#include "alloc.h"
#include "fetch.h"
#include "strbuf.h"

#define DEFAULT_TIMEOUT_MS 5000L
#define MAX_TIMEOUT_MS 600000L              /* a caller's typo must not hang a worker */
#define DEFAULT_MAX_BYTES ((size_t)1 << 20)
#define MAX_HEADER_BYTES ((size_t)100 * 1024) /* all header lines of one transfer */
#define MAX_AGE_CAP 31536000L                 /* one year */

typedef struct fetch_state {
    CURL *curl;
    char *body;
    size_t len, cap, max;
    int too_large;
    int in_body; /* header lines now are trailers: ignored */
    int headers_too_large;
    size_t header_bytes;
    long max_age;
    int no_store;
    char content_type[sizeof ((mcpauth_fetch_result *)0)->content_type];
    int deny_private;
    int refused;              /* the address guard refused a connection */
    char refused_why[160];
} fetch_state;

/* curl's messages can quote peer data (TLS alerts, header names): the
 * reason stays one printable line. */
static void set_curl_err(char *err, size_t errlen, const char *msg)
{
    if (!err || !errlen)
        return;
    mcpauth__errf(err, errlen, "%s", msg);
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

char *mcpauth__form_encode(const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!value)
        return NULL;
    size_t len = strlen(value);
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = mcpauth__xmalloc(3 * len + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (isalnum(*p) && *p < 0x80)
            *o++ = (char)*p; /* isalnum may be locale-dependent above 0x7f */
        else if (*p == '-' || *p == '.' || *p == '_' || *p == '~')
            *o++ = (char)*p;
        else if (*p == ' ')
            *o++ = '+';
        else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 0x0f];
        }
    }
    *o = '\0';
    return out;
}

void mcpauth__fetch_result_free(mcpauth_fetch_result *res)
{
    if (!res)
        return;
    free(res->body);
    res->body = NULL;
    res->len = 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    fetch_state *st = userp;
    st->in_body = 1;
    size_t n = size * nmemb; /* curl guarantees no overflow (≤ CURL_MAX_WRITE_SIZE) */
    if (n > st->max - st->len) {
        st->too_large = 1;
        return 0; /* any short count aborts the transfer */
    }
    if (st->len + n + 1 > st->cap) {
        size_t ncap = st->cap ? st->cap : 4096;
        while (ncap < st->len + n + 1)
            ncap *= 2;
        if (ncap > st->max + 1)
            ncap = st->max + 1;
        st->body = mcpauth__xrealloc(st->body, ncap);
        st->cap = ncap;
    }
    memcpy(st->body + st->len, data, n);
    st->len += n;
    st->body[st->len] = '\0';
    return n;
}

static int is_tchar(unsigned char c)
{
    return isalnum(c) ? c < 0x80 : strchr("!#$%&'*+-.^_`|~", c) != NULL && c != '\0';
}

/* Cache-Control (RFC 9111 §5.2): a comma-separated list of token[=token
 * or quoted-string].  no-store / no-cache (with or without field names)
 * forbid caching; max-age must be plain digits, and the smallest wins when
 * repeated.  A malformed list yields what was understood before the fault. */
static void parse_cache_control(fetch_state *st, const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *name = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        size_t nlen = (size_t)(p - name);
        if (nlen == 0)
            return;
        const char *val = NULL;
        size_t vlen = 0;
        if (p < end && *p == '=') {
            p++;
            if (p < end && *p == '"') {
                val = ++p;
                while (p < end && *p != '"') {
                    if (*p == '\\' && p + 1 < end)
                        p++;
                    p++;
                }
                if (p >= end)
                    return; /* unterminated quoted-string */
                vlen = (size_t)(p - val);
                p++;
            } else {
                val = p;
                while (p < end && is_tchar((unsigned char)*p))
                    p++;
                vlen = (size_t)(p - val);
            }
        }
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p < end && *p != ',')
            return;

        if ((nlen == 8 && strncasecmp(name, "no-store", 8) == 0) ||
            (nlen == 8 && strncasecmp(name, "no-cache", 8) == 0)) {
            st->no_store = 1;
        } else if (nlen == 7 && strncasecmp(name, "max-age", 7) == 0 && val && vlen > 0) {
            long secs = 0;
            size_t i;
            for (i = 0; i < vlen && val[i] >= '0' && val[i] <= '9'; i++)
                if (secs < MAX_AGE_CAP)
                    secs = secs * 10 + (val[i] - '0');
            if (i == vlen) {
                if (secs > MAX_AGE_CAP)
                    secs = MAX_AGE_CAP;
                if (st->max_age < 0 || secs < st->max_age)
                    st->max_age = secs;
            }
        }
    }
}

static void copy_content_type(fetch_state *st, const char *p, const char *end)
{
    size_t n = 0;
    while (p < end && n + 1 < sizeof st->content_type) {
        unsigned char c = (unsigned char)*p++;
        st->content_type[n++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    st->content_type[n] = '\0';
}

/* Header value of line if its field name is name (case-insensitive);
 * whitespace-trimmed into [*v, *vend). */
static int header_value(const char *line, size_t len, const char *name, const char **v,
                        const char **vend)
{
    size_t nlen = strlen(name);
    if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0)
        return 0;
    const char *p = line + nlen + 1, *e = line + len;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *v = p;
    *vend = e;
    return 1;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    fetch_state *st = userp;
    size_t n = size * nmemb;
    if (n > MAX_HEADER_BYTES - st->header_bytes) {
        st->headers_too_large = 1;
        return 0;
    }
    st->header_bytes += n;

    /* Each status line starts a new header block (1xx, then the final
     * response): only the last block describes the body. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        st->max_age = -1;
        st->no_store = 0;
        st->content_type[0] = '\0';
        return n;
    }
    if (n <= 2 && (n == 0 || data[0] == '\r' || data[0] == '\n')) {
        /* End of a header block: refuse a declared oversized body before
         * reading any of it. */
        curl_off_t cl = -1;
        long code = 0;
        curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200 &&
            curl_easy_getinfo(st->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
            cl > 0 && (curl_off_t)st->max < cl) {
            st->too_large = 1;
            return 0;
        }
        return n;
    }
    const char *v, *vend;
    if (st->in_body)
        return n;
    if (header_value(data, n, "Cache-Control", &v, &vend))
        parse_cache_control(st, v, vend);
    else if (header_value(data, n, "Content-Type", &v, &vend))
        copy_content_type(st, v, vend);
    return n;
}

/* ---- the address guard (deny_private) ---- */

/* Reason an IPv4 address (host order) must not be connected to, or NULL.
 * IANA special-purpose registry, minus what is globally reachable. */
static const char *v4_blocked(uint32_t a)
{
    static const struct {
        uint32_t net;
        int bits;
        const char *why;
    } ranges[] = {
        {0x00000000, 8, "unspecified address"},    /* 0.0.0.0/8 "this network" */
        {0x0a000000, 8, "private network"},        /* 10/8 */
        {0x64400000, 10, "shared address space"},  /* 100.64/10 (CGNAT) */
        {0x7f000000, 8, "loopback"},               /* 127/8 */
        {0xa9fe0000, 16, "link-local"},            /* 169.254/16 (cloud metadata) */
        {0xac100000, 12, "private network"},       /* 172.16/12 */
        {0xc0000000, 24, "reserved"},              /* 192.0.0/24 IETF assignments */
        {0xc0000200, 24, "documentation"},         /* 192.0.2/24 */
        {0xc0586300, 24, "reserved"},              /* 192.88.99/24 6to4 relays */
        {0xc0a80000, 16, "private network"},       /* 192.168/16 */
        {0xc6120000, 15, "reserved"},              /* 198.18/15 benchmarking */
        {0xc6336400, 24, "documentation"},         /* 198.51.100/24 */
        {0xcb007100, 24, "documentation"},         /* 203.0.113/24 */
        {0xe0000000, 4, "multicast"},              /* 224/4 */
        {0xf0000000, 4, "reserved"},               /* 240/4, 255.255.255.255 */
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if ((a >> (32 - ranges[i].bits)) == (ranges[i].net >> (32 - ranges[i].bits)))
            return ranges[i].why;
    return NULL;
}

static uint32_t v4_at(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *v6_blocked(const unsigned char b[16])
{
    static const unsigned char zero[16];
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const unsigned char discard[8] = {0x01, 0x00};
    if (memcmp(b, zero, 15) == 0)
        return b[15] == 1 ? "loopback" : b[15] == 0 ? "unspecified address" : "reserved";
    /* Forms that carry an IPv4 address reach whatever that address does. */
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return v4_blocked(v4_at(b + 12));
    if (b[0] == 0x20 && b[1] == 0x02) /* 2002::/16 6to4 */
        return v4_blocked(v4_at(b + 2));
    if (memcmp(b, zero, 12) == 0)
        return "reserved"; /* ::a.b.c.d, IPv4-compatible (deprecated) */
    if (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1)
        return "private network"; /* 64:ff9b:1::/48 local-use NAT64 */
    if (memcmp(b, discard, 8) == 0)
        return "reserved"; /* 100::/64 discard-only */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0)
        return "reserved"; /* 2001::/32 Teredo: embeds an obfuscated IPv4 */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return "documentation"; /* 2001:db8::/32 */
    if ((b[0] & 0xfe) == 0xfc)
        return "private network"; /* fc00::/7 unique local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local"; /* fe80::/10 */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return "private network"; /* fec0::/10 site-local (deprecated) */
    if (b[0] == 0xff)
        return "multicast";
    return NULL;
}

/* Reason and printable form of a socket address; NULL reason when allowed. */
static const char *sockaddr_blocked(const struct sockaddr *sa, socklen_t len, char *text,
                                    size_t textlen)
{
    snprintf(text, textlen, "?");
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)textlen);
        return v4_blocked(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, (socklen_t)textlen);
        return v6_blocked(in6->sin6_addr.s6_addr);
    }
    return "not an internet address";
}

const char *mcpauth__fetch_address_blocked(const char *ip)
{
    char buf[INET6_ADDRSTRLEN];
    struct in_addr a4;
    struct in6_addr a6;
    size_t len = ip ? strlen(ip) : 0;
    if (len >= 2 && ip[0] == '[' && ip[len - 1] == ']') {
        if (len - 2 >= sizeof buf)
            return "not an IP address";
        memcpy(buf, ip + 1, len - 2);
        buf[len - 2] = '\0';
        ip = buf;
    }
    if (ip && inet_pton(AF_INET, ip, &a4) == 1)
        return v4_blocked(ntohl(a4.s_addr));
    if (ip && inet_pton(AF_INET6, ip, &a6) == 1)
        return v6_blocked(a6.s6_addr);
    return "not an IP address";
}

/* Runs for every socket curl opens, with the resolved address it is about
 * to connect to: the only check DNS rebinding cannot slip past. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *addr)
{
    fetch_state *st = clientp;
    if (st->deny_private) {
        char text[INET6_ADDRSTRLEN];
        const char *why = purpose != CURLSOCKTYPE_IPCXN
                              ? "not an outgoing connection"
                              : sockaddr_blocked(&addr->addr, addr->addrlen, text, sizeof text);
        if (why) {
            if (!st->refused) /* the first refusal names the cause */
                snprintf(st->refused_why, sizeof st->refused_why,
                         "refused address %s (%s): only public addresses are allowed",
                         purpose != CURLSOCKTYPE_IPCXN ? "?" : text, why);
            st->refused = 1;
            return CURL_SOCKET_BAD;
        }
    }
#ifdef SOCK_CLOEXEC
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
#else
    return socket(addr->family, addr->socktype, addr->protocol);
#endif
}

/* Scheme and host from curl's own parse, so that what we check is what
 * curl connects to.  0 when allowed; *loopback tells whether the host is. */
static int check_url(CURLU *u, const char *url, int https_only, int *https, int *loopback,
                     char *err, size_t errlen)
{
    char *scheme = NULL, *host = NULL;
    int rc = -1;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        mcpauth__errf(err, errlen, "invalid URL");
        goto done;
    }
    *https = strcasecmp(scheme, "https") == 0;
    if (!*https && https_only) {
        mcpauth__errf(err, errlen, "refused URL: only https is allowed");
        goto done;
    }
    if (!*https && strcasecmp(scheme, "http") != 0) {
        mcpauth__errf(err, errlen, "refused URL: only https (or http to a loopback host) is allowed");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        mcpauth__errf(err, errlen, "invalid URL: no host");
        goto done;
    }
    *loopback = mcpauth__uri_host_is_loopback(host);
    if (!*https && !*loopback) {
        mcpauth__errf(err, errlen, "refused URL: only https (or http to a loopback host) is allowed");
        goto done;
    }
    rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    return rc;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

int mcpauth__fetch(const char *url, const mcpauth_fetch_opts *opts, mcpauth_fetch_result *res,
                  char *err, size_t errlen)
{
    static const mcpauth_fetch_opts no_opts;
    if (err && errlen)
        err[0] = '\0';
    if (!res) {
        mcpauth__errf(err, errlen, "internal error: no result");
        return -1;
    }
    memset(res, 0, sizeof *res);
    res->max_age = -1;
    if (!url) {
        mcpauth__errf(err, errlen, "invalid URL");
        return -1;
    }
    if (!opts)
        opts = &no_opts;
    const char *accept = opts->accept && *opts->accept ? opts->accept : "application/json";
    if (has_ctl(accept)) {
        mcpauth__errf(err, errlen, "invalid Accept value");
        return -1;
    }
    char accept_line[256];
    if (mcpauth__fmt(accept_line, sizeof accept_line, "Accept: %s", accept) < 0) {
        mcpauth__errf(err, errlen, "Accept value too long"); /* never sent cut short */
        return -1;
    }
    long timeout = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    if (timeout > MAX_TIMEOUT_MS)
        timeout = MAX_TIMEOUT_MS;

    fetch_state st = {0};
    st.max = opts->max_bytes ? opts->max_bytes : DEFAULT_MAX_BYTES;
    if (st.max > SIZE_MAX / 2)
        st.max = SIZE_MAX / 2; /* keeps max + 1 and the doubling in range */
    st.max_age = -1;
    st.deny_private = opts->deny_private != 0;

    CURLU *u = mcpauth__check(curl_url(), "CURLU");
    CURL *c = NULL;
    struct curl_slist *hdrs = NULL;
    char *user = NULL, *pass = NULL;
    char ebuf[CURL_ERROR_SIZE] = "";
    int rc = -1, https = 0, loopback = 0;
    if (check_url(u, url, opts->https_only, &https, &loopback, err, errlen) != 0)
        goto done;
    c = mcpauth__check(curl_easy_init(), "curl handle");
    st.curl = c;

    hdrs = mcpauth__check(curl_slist_append(hdrs, accept_line), "curl_slist");
    /* A 100-continue round trip only adds latency to small token requests. */
    hdrs = mcpauth__check(curl_slist_append(hdrs, "Expect:"), "curl_slist");
    if (opts->form)
        hdrs = mcpauth__check(
            curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded"),
            "curl_slist");

    CURLcode sc = CURLE_OK;
#define SET(opt, val)                                                                          \
    do {                                                                                       \
        if (sc == CURLE_OK)                                                                    \
            sc = curl_easy_setopt(c, opt, val);                                                \
    } while (0)
    /* The handle gets the very URL object that check_url inspected. */
    SET(CURLOPT_CURLU, u);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    SET(CURLOPT_PROTOCOLS_STR, https ? "https" : "http");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http");
#else
    SET(CURLOPT_PROTOCOLS, https ? CURLPROTO_HTTPS : CURLPROTO_HTTP);
    SET(CURLOPT_REDIR_PROTOCOLS, https ? CURLPROTO_HTTPS : CURLPROTO_HTTP);
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_MAXREDIRS, 0L);
    SET(CURLOPT_HTTP09_ALLOWED, 0L); /* a bare byte stream is not a response */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2); /* RFC 9325 floor */
    if (opts->ca_file)
        SET(CURLOPT_CAINFO, opts->ca_file);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, timeout);
    SET(CURLOPT_CONNECTTIMEOUT_MS, timeout);
    /* Environment proxies apply as curl applies them, but a loopback
     * target is this machine: an empty proxy disables them for this
     * transfer only, without overriding the operator's no_proxy list.
     * The address guard needs to see the address it connects to, which
     * behind a proxy would be the proxy's: no proxy with deny_private. */
    if (loopback || st.deny_private)
        SET(CURLOPT_PROXY, "");
    if (st.deny_private) {
        SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
        SET(CURLOPT_OPENSOCKETDATA, &st);
    }
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L); /* proxy replies are not ours */
    SET(CURLOPT_USERAGENT, "mcpauth/" MCPAUTH_VERSION);
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, &st);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, &st);
    SET(CURLOPT_ERRORBUFFER, ebuf);
    if (opts->form) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(opts->form));
        SET(CURLOPT_POSTFIELDS, opts->form);
    }
    if (opts->basic_user || opts->basic_pass) {
        /* RFC 6749 §2.3.1: client_id and secret are form-encoded first. */
        user = mcpauth__form_encode(opts->basic_user ? opts->basic_user : "");
        pass = mcpauth__form_encode(opts->basic_pass ? opts->basic_pass : "");
        if (!user || !pass) {
            mcpauth__errf(err, errlen, "client credentials too long");
            goto done;
        }
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, user);
        SET(CURLOPT_PASSWORD, pass);
    }
#undef SET
    if (sc != CURLE_OK) {
        mcpauth__errf(err, errlen, "cannot configure HTTP request (libcurl too old?)");
        goto done;
    }

    CURLcode cc = curl_easy_perform(c);
    if (st.too_large) {
        mcpauth__errf(err, errlen, "response larger than %zu bytes", st.max);
        goto done;
    }
    if (st.headers_too_large) {
        mcpauth__errf(err, errlen, "response headers larger than %zu bytes", MAX_HEADER_BYTES);
        goto done;
    }
    if (cc != CURLE_OK && st.refused) {
        mcpauth__errf(err, errlen, "%s", st.refused_why);
        goto done;
    }
    if (cc != CURLE_OK) {
        set_curl_err(err, errlen, ebuf[0] ? ebuf : curl_easy_strerror(cc));
        goto done;
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code < 100 || code > 999) {
        mcpauth__errf(err, errlen, "no valid HTTP response");
        goto done;
    }
    if (!st.body)
        st.body = mcpauth__xcalloc(1, 1); /* callers always get a string */
    res->status = code;
    res->body = st.body;
    res->len = st.len;
    st.body = NULL;
    res->max_age = st.no_store ? 0 : st.max_age;
    memcpy(res->content_type, st.content_type, sizeof res->content_type);
    rc = 0;
done:
    if (c)
        curl_easy_cleanup(c);
    curl_url_cleanup(u);
    curl_slist_free_all(hdrs);
    if (user) {
        OPENSSL_cleanse(user, strlen(user));
        free(user);
    }
    if (pass) {
        OPENSSL_cleanse(pass, strlen(pass));
        free(pass);
    }
    free(st.body);
    return rc;
}
