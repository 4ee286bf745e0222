/* JSON-RPC 2.0 / MCP checks on a POST body before it is forwarded.
 * See jsonrpc.h.  The body is hostile: besides json-c's own checks the text
 * must be plain RFC 8259 in strict UTF-8, because anything json-c reads
 * differently from the backend's parser (duplicate names, lone surrogates,
 * NaN ...) would let a client show us one message and the server another. */
#include "config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <mcpauth/mcpauth.h>

#include "jsonrpc.h"

/* Declared in mcpauth.h: the MCP revisions this build understands. */
const char *const mcpauth_mcp_versions[] = {"2026-07-28", "2025-11-25", "2025-06-18", NULL};

#include "alloc.h"

#define DEFAULT_MAX_DEPTH 64
#define DEFAULT_MAX_BATCH 32
#define METHOD_MAX 256
#define ID_STRING_MAX 256

#define V_2025_03 "2025-03-26"
#define V_2026 "2026-07-28"

/* The protocol version a 2026-07-28 request repeats in params._meta. */
#define META_VERSION_KEY "io.modelcontextprotocol/protocolVersion"

#define NOT_A_MESSAGE "the body must be a JSON-RPC message or a batch"

#define TO_STRING_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static const char *const supported_versions[] = {"2025-03-26", "2025-06-18", "2025-11-25", V_2026};

/* What mcpauth_rpc.priv holds: the parsed body (method and name point
 * into it) and our own copy of the id text. */
typedef struct rpc_priv {
    json_object *root;
    char *id_json;
} rpc_priv;

/* One checked message. */
typedef struct msg_info {
    mcpauth_msg_kind kind;
    const char *method;  /* requests and notifications */
    const char *name;    /* params.name / params.uri for the methods that have one */
    json_object *id;     /* requests and responses */
    json_object *params;
} msg_info;

/* ---------------------------------------------------------------- helpers */

__attribute__((format(printf, 4, 5)))
static int fail(mcpauth_rpc_error *err, int status, int code, const char *fmt, ...)
{
    err->status = status;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* The static copy of a supported version, so rpc->version never points
 * into the caller's header buffer. */
static const char *known_version(const char *v)
{
    for (size_t i = 0; i < sizeof supported_versions / sizeof supported_versions[0]; i++)
        if (strcmp(v, supported_versions[i]) == 0)
            return supported_versions[i];
    return NULL;
}

int mcpauth__rpc_version_supported(const char *version)
{
    return version && known_version(version) != NULL;
}

/* RFC 3629 exactly: json-c's VALIDATE_UTF8 only checks the byte pattern and
 * lets overlong forms, encoded surrogates and code points above U+10FFFF
 * through (e.g. "\xc0\xaf" for '/'). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c == 0xe0)
            need = 2, lo = 0xa0;
        else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
            need = 2;
        else if (c == 0xed)
            need = 2, hi = 0x9f;
        else if (c == 0xf0)
            need = 3, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3)
            need = 3;
        else if (c == 0xf4)
            need = 3, hi = 0x8f;
        else
            return 0;
        if (n - i - 1 < need || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex4(const char *s, size_t n, size_t i, unsigned *out)
{
    if (n - i < 4)
        return 0;
    unsigned v = 0;
    for (size_t k = 0; k < 4; k++) {
        char c = s[i + k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* One string starting at s[*pos] == '"'.  json-c turns an unpaired
 * surrogate escape into U+FFFD where other parsers keep it or fail, and
 * accepts raw control characters; both are refused here.  *nul is set when
 * the string contains \u0000. */
static const char *lex_string(const char *s, size_t n, size_t *pos, int *nul)
{
    size_t i = *pos + 1;
    *nul = 0;
    for (;;) {
        if (i >= n)
            return "unterminated string";
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            *pos = i + 1;
            return NULL;
        }
        if (c < 0x20)
            return "control character in string";
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 >= n)
            return "unterminated string";
        char e = s[i + 1];
        if (e != '\0' && strchr("\"\\/bfnrt", e)) {
            i += 2;
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || !hex4(s, n, i + 2, &cp))
            return "invalid escape";
        i += 6;
        if (cp == 0)
            *nul = 1;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return "unpaired surrogate escape";
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (n - i < 2 || s[i] != '\\' || s[i + 1] != 'u' || !hex4(s, n, i + 2, &lo) ||
                lo < 0xdc00 || lo > 0xdfff)
                return "unpaired surrogate escape";
            i += 6;
        }
    }
}

/* A number per RFC 8259: json-c also takes NaN, Infinity, "1." and "-01". */
static const char *lex_number(const char *s, size_t n, size_t *pos)
{
    size_t i = *pos;
    if (s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && is_digit(s[i]))
            i++;
    else
        return "invalid number";
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i]))
            return "invalid number";
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return "invalid number";
        while (i < n && is_digit(s[i]))
            i++;
    }
    *pos = i;
    return NULL;
}

/* The token-level half of strictness (json-c checked the grammar): only
 * RFC 8259 tokens, and a value token must be followed by a delimiter.
 * Counts the members (one ':' each) so that duplicate names, which json-c
 * silently collapses to the last value, show up as a shortfall. */
static const char *lex_check(const char *s, size_t n, size_t *members)
{
    size_t i = 0, m = 0;
    while (i < n) {
        char c = s[i];
        const char *why = NULL;
        int value = 0;
        if (is_ws(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == ',') {
            i++;
        } else if (c == ':') {
            m++;
            i++;
        } else if (c == '"') {
            int nul;
            if ((why = lex_string(s, n, &i, &nul)) != NULL)
                return why;
            if (nul) {
                /* json-c cuts member names at NUL: "method\u0000x" would read as "method". */
                size_t j = i;
                while (j < n && is_ws(s[j]))
                    j++;
                if (j < n && s[j] == ':')
                    return "NUL in member name";
            }
            value = 1;
        } else if (c == '-' || is_digit(c)) {
            if ((why = lex_number(s, n, &i)) != NULL)
                return why;
            value = 1;
        } else if (n - i >= 4 && (memcmp(s + i, "true", 4) == 0 || memcmp(s + i, "null", 4) == 0)) {
            i += 4;
            value = 1;
        } else if (n - i >= 5 && memcmp(s + i, "false", 5) == 0) {
            i += 5;
            value = 1;
        } else {
            return "unexpected character";
        }
        if (value && i < n && !is_ws(s[i]) && s[i] != ',' && s[i] != ']' && s[i] != '}' &&
            s[i] != ':')
            return "unexpected character";
    }
    *members = m;
    return NULL;
}

/* Members of every object in the tree; recursion is bounded by max_depth,
 * which json-c enforced. */
static size_t count_members(json_object *o)
{
    size_t n = 0;
    if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, key, val) {
            (void)key;
            n += 1 + count_members(val);
        }
    } else if (json_object_is_type(o, json_type_array)) {
        size_t len = json_object_array_length(o);
        for (size_t i = 0; i < len; i++)
            n += count_members(json_object_array_get_idx(o, i));
    }
    return n;
}

/* json-c over the whole of s, strict, bounded depth.  A bare top-level
 * number or literal leaves the tokener waiting for a delimiter, so a space
 * is fed to end it (trailing white space is allowed anyway).  json-c's
 * null is a NULL object: NULL with *e == json_tokener_success is "null". */
static json_object *tokenize(const char *s, size_t len, int max_depth, enum json_tokener_error *e)
{
    *e = json_tokener_success;
    json_tokener *tok = mcpauth__check(json_tokener_new_ex(max_depth), "json_tokener");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    *e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (!o && *e == json_tokener_continue && end == len) {
        o = json_tokener_parse_ex(tok, " ", 1);
        *e = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok) == 1 ? len : 0;
    }
    if (*e == json_tokener_success && end != len)
        *e = json_tokener_error_parse_unexpected;
    if (o && *e != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static json_object *parse_body(const char *body, size_t len, int max_depth, mcpauth_rpc_error *err)
{
    if (!body || len == 0) {
        fail(err, 400, MCPAUTH_RPC_PARSE_ERROR, "Parse error: empty body");
        return NULL;
    }
    if (len > INT_MAX - 1) { /* json-c takes an int length */
        fail(err, 400, MCPAUTH_RPC_PARSE_ERROR, "Parse error: body too large");
        return NULL;
    }
    if (memchr(body, '\0', len)) {
        fail(err, 400, MCPAUTH_RPC_PARSE_ERROR, "Parse error: NUL byte in body");
        return NULL;
    }
    if (!utf8_valid((const unsigned char *)body, len)) {
        fail(err, 400, MCPAUTH_RPC_PARSE_ERROR, "Parse error: invalid UTF-8");
        return NULL;
    }
    enum json_tokener_error e;
    json_object *root = tokenize(body, len, max_depth, &e);
    if (!root && e != json_tokener_success) {
        if (e == json_tokener_continue)
            fail(err, 400, MCPAUTH_RPC_PARSE_ERROR, "Parse error: unexpected end of input");
        else if (e == json_tokener_error_depth)
            fail(err, 400, MCPAUTH_RPC_PARSE_ERROR, "Parse error: nesting too deep");
        else
            fail(err, 400, MCPAUTH_RPC_PARSE_ERROR, "Parse error: %s", json_tokener_error_desc(e));
        return NULL;
    }
    size_t members = 0;
    const char *why = lex_check(body, len, &members);
    if (!why && members != count_members(root))
        why = "duplicate member name";
    if (why) {
        json_object_put(root);
        fail(err, 400, MCPAUTH_RPC_PARSE_ERROR, "Parse error: %s", why);
        return NULL;
    }
    if (!root) /* the body is the JSON literal null */
        fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST, "Invalid Request: %s", NOT_A_MESSAGE);
    return root;
}

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

static int has_member(json_object *o, const char *key)
{
    return json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, NULL);
}

/* A string value without embedded NUL (json-c keeps them; C code would
 * read a shorter string than the backend does). */
static const char *plain_string(json_object *v)
{
    return mcpauth__json_str(v, NULL);
}

/* The id as JSON text when it is a usable id: a string of at most
 * ID_STRING_MAX bytes, or an integer json-c holds exactly (it saturates
 * out-of-range integers at INT64_MIN/INT64_MAX/UINT64_MAX, so those bounds
 * are refused: echoing a saturated id would answer the wrong request). */
static const char *id_text(json_object *id, const char **why)
{
    *why = "id must be a string or integer";
    if (json_object_is_type(id, json_type_string)) {
        size_t n;
        /* "7\u0000x" would be one id to us and to a backend that reads C
         * strings another: the answer could reach the wrong request. */
        if (!mcpauth__json_str(id, &n)) {
            *why = "id must not contain NUL";
            return NULL;
        }
        if (n > ID_STRING_MAX) {
            *why = "id too long";
            return NULL;
        }
    } else if (json_object_is_type(id, json_type_int)) {
        int64_t v = json_object_get_int64(id);
        if (v == INT64_MAX || v == INT64_MIN) {
            *why = "id out of range";
            return NULL;
        }
    } else {
        return NULL;
    }
    const char *t = json_object_to_json_string_ext(id, TO_STRING_FLAGS);
    if (!t)
        mcpauth__oom("json text");
    return t;
}

/* The error carries the id when it was readable and fits, else null. */
static void note_id(mcpauth_rpc_error *err, json_object *msg)
{
    const char *why;
    json_object *id = member(msg, "id");
    const char *t = id ? id_text(id, &why) : NULL;
    if (t && strlen(t) < sizeof err->id_json)
        memcpy(err->id_json, t, strlen(t) + 1);
}

/* The member that names the target of the methods that have one; the
 * 2026-07-28 Mcp-Name header mirrors it. */
static const char *name_key(const char *method)
{
    if (strcmp(method, "tools/call") == 0 || strcmp(method, "prompts/get") == 0)
        return "name";
    if (strcmp(method, "resources/read") == 0 || strcmp(method, "resources/subscribe") == 0 ||
        strcmp(method, "resources/unsubscribe") == 0)
        return "uri";
    return NULL;
}

static int valid_method(json_object *v)
{
    const char *s = plain_string(v);
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > METHOD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* One JSON-RPC message: request, notification or response. */
static int check_message(json_object *m, msg_info *mi, mcpauth_rpc_error *err)
{
    memset(mi, 0, sizeof *mi);
    const char *why;
    if (!json_object_is_type(m, json_type_object))
        return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                    "Invalid Request: a message must be a JSON object");
    const char *jv = plain_string(member(m, "jsonrpc"));
    if (!jv || strcmp(jv, "2.0") != 0)
        return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"");

    int has_result = has_member(m, "result"), has_error = has_member(m, "error");
    json_object *method = member(m, "method");
    int has_method = has_member(m, "method"), has_id = has_member(m, "id");
    mi->id = member(m, "id");

    if (has_method) {
        /* Both would let the proxy and the server disagree on what it is. */
        if (has_result || has_error)
            return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                        "Invalid Request: a message cannot have both method and result or error");
        if (!valid_method(method))
            return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                        "Invalid Request: method must be a non-empty string of at most %d bytes "
                        "without control characters", METHOD_MAX);
        mi->method = plain_string(method);
        if (has_id) {
            if (!id_text(mi->id, &why))
                return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST, "Invalid Request: %s", why);
            mi->kind = MCPAUTH_MSG_REQUEST;
        } else {
            mi->kind = MCPAUTH_MSG_NOTIFICATION;
        }
        /* -32602 rather than -32600: the envelope is fine, its params are not. */
        if (has_member(m, "params")) {
            mi->params = member(m, "params");
            if (!json_object_is_type(mi->params, json_type_object) &&
                !json_object_is_type(mi->params, json_type_array))
                return fail(err, 400, MCPAUTH_RPC_INVALID_PARAMS,
                            "Invalid params: params must be an object or array");
        }
        /* Named methods always get a name, so a policy keyed on it cannot
         * be dodged by leaving it out; the server would refuse these anyway. */
        const char *key = name_key(mi->method);
        if (key) {
            mi->name = plain_string(member(mi->params, key));
            if (!mi->name)
                return fail(err, 400, MCPAUTH_RPC_INVALID_PARAMS,
                            "Invalid params: %s needs params.%s as a string", mi->method, key);
        }
        return 0;
    }

    if (!has_result && !has_error)
        return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                    "Invalid Request: no method, result or error");
    if (has_result && has_error)
        return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                    "Invalid Request: a response has exactly one of result and error");
    if (!has_id)
        return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST, "Invalid Request: a response needs an id");
    if (!id_text(mi->id, &why))
        return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST, "Invalid Request: %s", why);
    if (has_error) {
        json_object *e = member(m, "error");
        if (!json_object_is_type(e, json_type_object) ||
            !json_object_is_type(member(e, "code"), json_type_int) ||
            !json_object_is_type(member(e, "message"), json_type_string))
            return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                        "Invalid Request: error must be an object with an integer code and a "
                        "string message");
    }
    mi->kind = MCPAUTH_MSG_RESPONSE;
    return 0;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard-alphabet base64, padding optional, unused bits zero; returns
 * the decoded length or -1.  out holds at least len / 4 * 3 + 3 bytes. */
static long b64_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 0 && len > 0 && in[len - 1] == '=')
        len -= in[len - 2] == '=' ? 2 : 1;
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1;
    return (long)o;
}

/* Mcp-Name against the body's name.  SEP-2243: a value that cannot travel
 * as a plain header (non-ASCII, control characters, surrounding spaces, or
 * one that looks like the marker itself) is sent as =?base64?B64?=, and an
 * intermediary compares the decoded value. */
static int name_matches(const char *hdr, const char *name)
{
    static const char pre[] = "=?base64?", suf[] = "?=";
    size_t hl = strlen(hdr), nl = strlen(name);
    if (hl >= sizeof pre - 1 + sizeof suf - 1 && memcmp(hdr, pre, sizeof pre - 1) == 0 &&
        memcmp(hdr + hl - (sizeof suf - 1), suf, sizeof suf - 1) == 0) {
        const char *p = hdr + sizeof pre - 1;
        size_t pl = hl - (sizeof pre - 1) - (sizeof suf - 1);
        unsigned char *buf = mcpauth__xmalloc(pl / 4 * 3 + 3);
        long n = b64_decode(p, pl, buf);
        int ok = n >= 0 && (size_t)n == nl && memcmp(buf, name, nl) == 0;
        free(buf);
        return ok;
    }
    return hl == nl && memcmp(hdr, name, nl) == 0;
}

/* The 2026-07-28 rules for a single message: the headers mirror the body. */
static int check_era_2026(const msg_info *mi, const mcpauth_rpc_headers *h, mcpauth_rpc_error *err)
{
    if (mi->kind == MCPAUTH_MSG_RESPONSE)
        return fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                    "Invalid Request: clients may not POST responses in this protocol revision");
    if (!h->mcp_method || strcmp(h->mcp_method, mi->method) != 0)
        return fail(err, 400, MCPAUTH_RPC_HEADER_MISMATCH, "Mcp-Method header does not match the body");
    /* A name header with nothing to match is as wrong as a different one. */
    if (mi->name ? !h->mcp_name || !name_matches(h->mcp_name, mi->name) : h->mcp_name != NULL)
        return fail(err, 400, MCPAUTH_RPC_HEADER_MISMATCH, "Mcp-Name header does not match the body");
    /* The body may repeat the version in _meta; it must then agree.  Its
     * absence is left to the server. */
    json_object *meta = member(mi->params, "_meta");
    if (has_member(meta, META_VERSION_KEY)) {
        const char *v = plain_string(member(meta, META_VERSION_KEY));
        if (!v || strcmp(v, V_2026) != 0)
            return fail(err, 400, MCPAUTH_RPC_HEADER_MISMATCH,
                        "MCP-Protocol-Version header does not match the body");
    }
    return 0;
}

/* The version in force when the header is absent: the spec says assume
 * 2025-03-26, except that an initialize request proposes its own.  An
 * unknown proposal is not refused: negotiation is the server's business. */
static const char *version_without_header(json_object *root)
{
    const char *method = plain_string(member(root, "method"));
    if (!has_member(root, "id") || !method || strcmp(method, "initialize") != 0)
        return V_2025_03;
    /* "2025-06-18\u0000x" is not 2025-06-18: the server would not read it so. */
    const char *pv = plain_string(member(member(root, "params"), "protocolVersion"));
    const char *v = pv ? known_version(pv) : NULL;
    /* 2026-07-28 has no initialize: stay in the era that has one. */
    if (!v || strcmp(v, V_2026) == 0)
        return V_2025_03;
    return v;
}

/* -------------------------------------------------------------- interface */

int mcpauth__rpc_parse(const char *body, size_t len, const mcpauth_rpc_headers *h,
                      const mcpauth_rpc_limits *limits, mcpauth_rpc *rpc, mcpauth_rpc_error *err)
{
    static const mcpauth_rpc_headers no_headers;
    mcpauth_rpc_error scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof *err);
    strcpy(err->id_json, "null");
    if (rpc)
        memset(rpc, 0, sizeof *rpc);
    if (!h)
        h = &no_headers;
    int max_depth = limits && limits->max_depth > 0 ? limits->max_depth : DEFAULT_MAX_DEPTH;
    size_t max_batch = limits && limits->max_batch > 0 ? limits->max_batch : DEFAULT_MAX_BATCH;

    json_object *root = parse_body(body, len, max_depth, err);
    if (!root)
        return -1;
    /* From here on the refusal names the request's id when it can. */
    if (json_object_is_type(root, json_type_object))
        note_id(err, root);

    const char *version;
    if (h->protocol_version) {
        version = known_version(h->protocol_version);
        if (!version) {
            fail(err, 400, MCPAUTH_RPC_UNSUPPORTED_VERSION, "Unsupported MCP-Protocol-Version");
            goto refuse;
        }
    } else {
        version = version_without_header(root);
    }
    mcpauth_era era = strcmp(version, V_2026) == 0 ? MCPAUTH_ERA_2026 : MCPAUTH_ERA_2025;

    msg_info first;
    memset(&first, 0, sizeof first);
    size_t count = 1;
    int batch = 0;
    if (json_object_is_type(root, json_type_array)) {
        /* Batching exists in 2025-03-26 only (removed in 2025-06-18). */
        if (strcmp(version, V_2025_03) != 0) {
            fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                 "Batch requests are not supported by this protocol revision");
            goto refuse;
        }
        batch = 1;
        count = json_object_array_length(root);
        if (count == 0) {
            fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST, "Invalid Request: empty batch");
            goto refuse;
        }
        if (count > max_batch) {
            fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST, "Invalid Request: more than %zu messages in a batch",
                 max_batch);
            goto refuse;
        }
        for (size_t i = 0; i < count; i++) {
            msg_info mi;
            if (check_message(json_object_array_get_idx(root, i), &mi, err) < 0)
                goto refuse;
            /* 2025-03-26: "The initialize request MUST NOT be part of a batch". */
            if (mi.method && strcmp(mi.method, "initialize") == 0) {
                fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST,
                     "Invalid Request: initialize cannot be part of a batch");
                goto refuse;
            }
            if (i == 0)
                first = mi;
        }
    } else if (json_object_is_type(root, json_type_object)) {
        if (check_message(root, &first, err) < 0)
            goto refuse;
        if (era == MCPAUTH_ERA_2026 && check_era_2026(&first, h, err) < 0)
            goto refuse;
    } else {
        fail(err, 400, MCPAUTH_RPC_INVALID_REQUEST, "Invalid Request: %s", NOT_A_MESSAGE);
        goto refuse;
    }

    if (!rpc) {
        json_object_put(root);
        return 0;
    }
    const char *why;
    const char *id = first.kind == MCPAUTH_MSG_NOTIFICATION ? "null" : id_text(first.id, &why);
    rpc_priv *p = mcpauth__xcalloc(1, sizeof *p);
    p->id_json = mcpauth__xstrdup(id);
    p->root = root;
    rpc->priv = p;
    rpc->era = era;
    rpc->version = version;
    rpc->batch = batch;
    rpc->count = count;
    rpc->kind = first.kind;
    rpc->method = first.method;
    rpc->name = first.name;
    rpc->id_json = p->id_json;
    rpc->is_initialize = era == MCPAUTH_ERA_2025 && first.kind == MCPAUTH_MSG_REQUEST &&
                         strcmp(first.method, "initialize") == 0;
    return 0;

refuse:
    json_object_put(root);
    return -1;
}

void mcpauth__rpc_free(mcpauth_rpc *rpc)
{
    if (!rpc)
        return;
    rpc_priv *p = rpc->priv;
    if (p) {
        json_object_put(p->root);
        free(p->id_json);
        free(p);
    }
    memset(rpc, 0, sizeof *rpc);
}

/* The id for an error reply.  It is our own text, but it is parsed rather
 * than pasted so that a wrong argument cannot inject JSON; anything that is
 * not a string or integer becomes null. */
static json_object *id_value(const char *id_json)
{
    /* an allowed id's JSON text: each byte escaped as \u00XX, plus quotes */
    if (!id_json || !*id_json || strlen(id_json) > 6 * ID_STRING_MAX + 2)
        return NULL;
    enum json_tokener_error e;
    json_object *id = tokenize(id_json, strlen(id_json), 2, &e);
    if (id && !json_object_is_type(id, json_type_string) && !json_object_is_type(id, json_type_int)) {
        json_object_put(id);
        id = NULL;
    }
    return id;
}

/* A member that json-c could not add would silently be missing. */
static void add_member(json_object *o, const char *key, json_object *v)
{
    if (json_object_object_add(o, key, v) < 0)
        mcpauth__oom("json");
}

int mcpauth__rpc_error_json(char *buf, size_t cap, int code, const char *message, const char *id_json)
{
    if (!buf || cap == 0)
        return -1;
    buf[0] = '\0';
    int ret = -1;
    json_object *o = mcpauth__check(json_object_new_object(), "json");
    json_object *e = mcpauth__check(json_object_new_object(), "json");
    /* Members in the order of the contract; json-c keeps insertion order. */
    add_member(o, "jsonrpc", mcpauth__check(json_object_new_string("2.0"), "json"));
    add_member(e, "code", mcpauth__check(json_object_new_int(code), "json"));
    add_member(e, "message",
               mcpauth__check(json_object_new_string(message ? message : ""), "json"));
    add_member(o, "error", e);
    add_member(o, "id", id_value(id_json)); /* NULL: null */
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, TO_STRING_FLAGS, &n);
    if (!s)
        mcpauth__oom("json text");
    if (n < cap && n <= INT_MAX) {
        memcpy(buf, s, n + 1);
        ret = (int)n;
    }
    json_object_put(o);
    return ret;
}
