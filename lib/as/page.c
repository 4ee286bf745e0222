/* What the AS sends back: HTML pages (escaped, with the headers that keep
 * them out of frames and caches), JSON replies and OAuth errors. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"
#include "as_priv.h"

FILE *mcpauth__as_memstream(char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    return mcpauth__check(open_memstream(buf, len), "open_memstream");
}

void mcpauth__as_memstream_close(FILE *f, char **buf)
{
    if (fclose(f) != 0 || !*buf)
        mcpauth__oom("open_memstream");
}

void mcpauth__as_html_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\t')
                fputc('?', f);
            else
                fputc(*s, f);
        }
    }
}

static void security_headers(mcpauth_response *resp, const char *form_action)
{
    char csp[2300];
    snprintf(csp, sizeof csp,
             "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'%s%s; "
             "frame-ancestors 'none'; base-uri 'none'",
             form_action ? " " : "", form_action ? form_action : "");
    mcpauth_response_header(resp, "Content-Security-Policy", csp);
    mcpauth_response_header(resp, "X-Frame-Options", "DENY");
    mcpauth_response_header(resp, "X-Content-Type-Options", "nosniff");
    mcpauth_response_header(resp, "Referrer-Policy", "no-referrer");
    mcpauth_response_header(resp, "Cache-Control", "no-store");
}

static const char page_head[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width\"><title>%s</title>"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}"
    ".warn{background:#fff4ce;padding:.5em 1em;border-left:4px solid #c90}"
    "code{background:#eee;padding:0 .3em}button{font-size:1em;padding:.4em 1.2em;margin-right:1em}"
    "</style></head><body>";

void mcpauth__as_page_head(FILE *f, const char *title)
{
    fprintf(f, page_head, title);
}

void mcpauth__as_page_send(mcpauth_response *resp, int status, FILE *f, char **buf, size_t *len,
                           const char *form_action)
{
    mcpauth__as_memstream_close(f, buf);
    security_headers(resp, form_action);
    mcpauth_response_set_status(resp, status);
    mcpauth_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    mcpauth_response_send(resp, *buf, *len);
    free(*buf);
    *buf = NULL;
}

void mcpauth__as_error_page(mcpauth_response *resp, int status, const char *title,
                            const char *msg)
{
    char *buf;
    size_t len;
    FILE *f = mcpauth__as_memstream(&buf, &len);
    mcpauth__as_page_head(f, "Authorization error");
    fputs("<h1>", f);
    mcpauth__as_html_escape(f, title);
    fputs("</h1><p>", f);
    mcpauth__as_html_escape(f, msg);
    fputs("</p></body></html>\n", f);
    mcpauth__as_page_send(resp, status, f, &buf, &len, NULL);
}

void mcpauth__as_json_reply(mcpauth_response *resp, int status, json_object *o)
{
    mcpauth_response_header(resp, "Cache-Control", "no-store");
    mcpauth_response_header(resp, "Pragma", "no-cache");
    mcpauth_response_json(resp, status,
                          json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

void mcpauth__as_oauth_error(mcpauth_response *resp, int status, const char *error,
                             const char *desc)
{
    mcpauth_response_header(resp, "Pragma", "no-cache");
    mcpauth_response_error(resp, status, error, desc);
}

void mcpauth__as_cors_public(mcpauth_response *resp)
{
    mcpauth_response_header(resp, "Access-Control-Allow-Origin", "*");
}
