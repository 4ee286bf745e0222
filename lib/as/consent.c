/* The consent page and the form it posts back.  Each form is signed (an
 * HMAC of the user and the whole request, see csrf_token), expires after
 * MCPAUTH__AS_CSRF_WINDOW seconds, and is accepted once. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <mcpauth/log.h>
#include <mcpauth/util.h>

#include "alloc.h"
#include "as_priv.h"
#include "clock.h"
#include "metrics.h"
#include "encode.h"

static void csrf_token(const mcpauth_as *as, const char *user, const mcpauth__as_authz *a,
                       char *out, size_t cap)
{
    char *msg;
    size_t len;
    FILE *m = mcpauth__as_memstream(&msg, &len);
    /* NUL separators: no field can be shifted into its neighbour */
    fprintf(m, "csrf%c%s%c%s%c%s%c%s%c%s%c%s%c%s%c%s%c%s", 0, a->ts, 0, user, 0, a->client_id, 0,
            a->redirect_uri, 0, a->resource, 0, a->scope, 0, a->code_challenge, 0, a->state, 0,
            a->nonce);
    mcpauth__as_memstream_close(m, &msg);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), as->secret, sizeof as->secret, (unsigned char *)msg, len, mac, &ml);
    free(msg);
    mcpauth__b64url_encode(mac, ml, out, cap);
}

/* ------------------------------------------------------------------ page */

/* Who asks for what, and where the browser goes next. */
static void consent_intro(FILE *f, const char *user, const mcpauth_client *c,
                          const mcpauth_resource *res, const char *redirect, int only_loopback)
{
    char host[512] = "";
    mcpauth__as_loopback_uri(redirect, host, sizeof host);
    /* Defence in depth: a name that could read as another (invisible or
     * bidi characters, stored before they were refused) is never shown. */
    int name_ok = c->client_name && *c->client_name &&
                  !mcpauth__display_name_problem(c->client_name, strlen(c->client_name));
    mcpauth__as_page_head(f, "Authorize access");
    fputs("<h1>Authorize access</h1><p><strong>", f);
    mcpauth__as_html_escape(f, name_ok ? c->client_name : c->client_id);
    fputs("</strong> wants to use <strong>", f);
    mcpauth__as_html_escape(f, res->resource_name ? res->resource_name : res->uri);
    fputs("</strong> (<code>", f);
    mcpauth__as_html_escape(f, res->uri);
    fputs("</code>) as <strong>", f);
    mcpauth__as_html_escape(f, user);
    fputs("</strong>.</p><p>After you answer you go to <strong>", f);
    mcpauth__as_html_escape(f, host);
    fputs("</strong>.</p>", f);
    if (only_loopback)
        fputs("<p class=\"warn\">This client only redirects to this computer (a local "
              "program). Approve only if you just started it yourself.</p>", f);
    if (!name_ok || strcmp(c->kind ? c->kind : "", "cimd") != 0)
        fputs("<p class=\"warn\">The client's name is self-declared and not verified.</p>", f);
}

static void consent_scopes(FILE *f, const char *scope)
{
    fputs("<p>Permissions:</p><ul>", f);
    mcpauth_strlist sl = {0, NULL};
    mcpauth_strlist_split(&sl, scope);
    for (size_t i = 0; i < sl.n; i++) {
        fputs("<li><code>", f);
        mcpauth__as_html_escape(f, sl.v[i]);
        fputs("</code></li>", f);
    }
    if (!sl.n)
        fputs("<li>basic access</li>", f);
    mcpauth_strlist_free(&sl);
    fputs("</ul>", f);
}

/* The form: the request again in hidden fields, signed, and the buttons. */
static void consent_form(FILE *f, const mcpauth_as *as, const mcpauth__as_authz *a)
{
    char action[2100];
    mcpauth_as_endpoint(as->cfg, "authorize", action, sizeof action);
    fputs("<form method=\"post\" action=\"", f);
    mcpauth__as_html_escape(f, action);
    fputs("\">", f);
    const char *hidden[][2] = {{"response_type", a->response_type}, {"client_id", a->client_id},
                               {"redirect_uri", a->redirect_uri}, {"scope", a->scope},
                               {"state", a->state}, {"code_challenge", a->code_challenge},
                               {"code_challenge_method", a->code_challenge_method},
                               {"resource", a->resource}, {"ts", a->ts}, {"nonce", a->nonce},
                               {"csrf", a->csrf}};
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        fputs("<input type=\"hidden\" name=\"", f);
        mcpauth__as_html_escape(f, hidden[i][0]);
        fputs("\" value=\"", f);
        mcpauth__as_html_escape(f, hidden[i][1]);
        fputs("\">", f);
    }
    if (as->ac->consent_remember)
        fputs("<p><label><input type=\"checkbox\" name=\"remember\" value=\"1\" checked> "
              "Remember my approval</label></p>", f);
    fputs("<p><button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">Approve"
          "</button><button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny"
          "</button></p></form></body></html>\n", f);
}

void mcpauth__as_consent_page(mcpauth_as *as, mcpauth_response *resp, const char *user,
                              const mcpauth_client *c, const mcpauth_resource *res,
                              mcpauth__as_authz *a, const char *redirect, int only_loopback)
{
    snprintf(a->ts, sizeof a->ts, "%ld", (long)mcpauth__now());
    /* makes every form unique, so "used" means this form, not one alike */
    if (mcpauth__as_random(a->nonce, sizeof a->nonce, 16) < 0) {
        mcpauth__as_error_page(resp, 500, "Server error", "No random numbers are available.");
        return;
    }
    csrf_token(as, user, a, a->csrf, sizeof a->csrf);
    char *buf;
    size_t len;
    FILE *f = mcpauth__as_memstream(&buf, &len);
    consent_intro(f, user, c, res, redirect, only_loopback);
    consent_scopes(f, a->scope);
    consent_form(f, as, a);
    /* the form posts here, then the browser is redirected to the client */
    char origin[2100] = "";
    const char *sep = strstr(redirect, "://");
    if (sep)
        snprintf(origin, sizeof origin, "%.*s", (int)(sep + 3 - redirect) +
                 (int)strcspn(sep + 3, "/?#"), redirect);
    mcpauth__as_page_send(resp, 200, f, &buf, &len, origin[0] ? origin : NULL);
}

/* ---------------------------------------------------------------- answer */

/* The form is ours, for this user and request, and not expired. */
static int form_genuine(const mcpauth_as *as, const char *user, const mcpauth__as_authz *a,
                        long ts)
{
    char want[128];
    time_t now = mcpauth__now();
    csrf_token(as, user, a, want, sizeof want);
    return a->csrf[0] && mcpauth__ct_equal(want, strlen(want), a->csrf, strlen(a->csrf)) &&
           ts > 0 && now - ts <= MCPAUTH__AS_CSRF_WINDOW && ts <= now + 60;
}

/* Single use: a form posted again (a second code from one approval, or a
 * replay from the history or a proxy log) is refused.  The CSRF token is
 * unique per form (it signs ts, user and request).  1, or 0 answered. */
static int form_first_use(mcpauth_as *as, const mcpauth_request *req, mcpauth_response *resp,
                          const char *user, const mcpauth__as_authz *a, long ts)
{
    int fresh = mcpauth__store_form_use(as->store, a->csrf, ts + MCPAUTH__AS_CSRF_WINDOW + 60);
    if (fresh == 1)
        return 1;
    if (fresh < 0 && mcpauth__as_state_fault("recording a consent form")) {
        /* rolled back: the same form can be posted again */
        mcpauth_response_header(resp, "Retry-After", "5");
        mcpauth__as_error_page(resp, 503, "Temporarily unavailable",
                               "The server could not record your answer just now. Go back and "
                               "send the form again in a moment.");
        return 0;
    }
    if (fresh == 0)
        mcpauth_log_security("consent_replayed", "user", user, "client_id", a->client_id,
                             "client", req->remote_addr, NULL);
    mcpauth__as_error_page(resp, fresh < 0 ? 500 : 400,
                           fresh < 0 ? "Server error" : "Form already used",
                           fresh < 0 ? "The server could not record your answer. Try again."
                                     : "This consent form was already answered. Start the "
                                       "sign-in again from the application.");
    return 0;
}

int mcpauth__as_consent_answer(mcpauth_as *as, const mcpauth_request *req,
                               mcpauth_response *resp, const char *user, const mcpauth_client *c,
                               const mcpauth_resource *res, const mcpauth__as_authz *a,
                               const char *redirect)
{
    long ts = strtol(a->ts, NULL, 10);
    if (!form_genuine(as, user, a, ts)) {
        mcpauth_log_security("csrf_refused", "user", user, "client_id", a->client_id, "client",
                             req->remote_addr, NULL);
        mcpauth__as_error_page(resp, 403, "Request expired or forged",
                               "The consent form was not accepted. Start the sign-in again from "
                               "the application.");
        return 0;
    }
    if (!form_first_use(as, req, resp, user, a, ts))
        return 0;
    if (strcmp(a->decision, "approve") != 0) {
        mcpauth_log(MCPAUTH_LOG_INFO, "consent_denied", "user", user, "client_id", a->client_id,
                    NULL);
        mcpauth__as_redirect_back(as, resp, redirect, NULL, "access_denied",
                                  "the user denied the request", a->state);
        return 0;
    }
    if (as->ac->consent_remember && a->remember[0])
        mcpauth__store_consent_add(as->store, user, c->client_id, res->uri, a->scope);
    mcpauth__metrics_add(NULL, MCPAUTH_M_AS_CONSENTS, 1);
    return 1;
}
