
/*
 * conductor_status: the zone's counters as JSON (the default), Prometheus
 * text, or a self-refreshing HTML page that renders the JSON.
 *
 * Every node is copied under the zone lock and formatted after the lock is
 * released: a large report, or a slow allocation, never holds up the
 * workers that pick keys under the same lock.  Only names are reported,
 * never a provider key's secret, nor a client's key or its digest.
 */


#include <jansson.h>

#include "ngx_http_conductor.h"
#include "ngx_http_conductor_status_html.h"


#ifndef NGX_HTTP_CONDUCTOR_VERSION
#define NGX_HTTP_CONDUCTOR_VERSION  "0.1.0"
#endif


#define NGX_HTTP_CONDUCTOR_STATUS_JSON        0
#define NGX_HTTP_CONDUCTOR_STATUS_PROMETHEUS  1
#define NGX_HTTP_CONDUCTOR_STATUS_HTML        2

/* what a Prometheus family reports, see ngx_http_conductor_status_values() */
#define NGX_HTTP_CONDUCTOR_M_REQUESTS   0
#define NGX_HTTP_CONDUCTOR_M_RESPONSES  1
#define NGX_HTTP_CONDUCTOR_M_ERRORS     2
#define NGX_HTTP_CONDUCTOR_M_TOKENS     3
#define NGX_HTTP_CONDUCTOR_M_COST       4
#define NGX_HTTP_CONDUCTOR_M_ESTIMATED  5
#define NGX_HTTP_CONDUCTOR_M_UNPRICED   6
#define NGX_HTTP_CONDUCTOR_M_INFLIGHT   7
#define NGX_HTTP_CONDUCTOR_M_TTFB       8
#define NGX_HTTP_CONDUCTOR_M_REMAINING  9
#define NGX_HTTP_CONDUCTOR_M_COOLDOWN   10
#define NGX_HTTP_CONDUCTOR_M_BREAKER    11
#define NGX_HTTP_CONDUCTOR_M_FAILURES   12
#define NGX_HTTP_CONDUCTOR_M_DISABLED   13
#define NGX_HTTP_CONDUCTOR_M_LIMIT      14
#define NGX_HTTP_CONDUCTOR_M_USED       15
#define NGX_HTTP_CONDUCTOR_M_BUDGET     16
#define NGX_HTTP_CONDUCTOR_M_SPENT      17
#define NGX_HTTP_CONDUCTOR_M_RESERVED   18

/* the scopes of the Prometheus families */
#define NGX_HTTP_CONDUCTOR_S_KEY        0
#define NGX_HTTP_CONDUCTOR_S_PROVIDER   1
#define NGX_HTTP_CONDUCTOR_S_MODEL      2
#define NGX_HTTP_CONDUCTOR_S_CLIENT     3
#define NGX_HTTP_CONDUCTOR_STATUS_NSCOPES      4

/* how a Prometheus value is printed */
#define NGX_HTTP_CONDUCTOR_U_COUNT      0
#define NGX_HTTP_CONDUCTOR_U_MSEC       1   /* ms, printed as seconds */
#define NGX_HTTP_CONDUCTOR_U_PICO       2   /* pico-USD, printed as USD */

#define NGX_HTTP_CONDUCTOR_STATUS_NTOKENS      5

/* room for a HELP line, or a sample line without its item's labels */
#define NGX_HTTP_CONDUCTOR_STATUS_LINE   160


/* one copied node with what it belongs to */
typedef struct {
    ngx_str_t                         name;
    ngx_http_conductor_provider_t    *provider;  /* providers and keys */
    ngx_http_conductor_key_t         *key;       /* keys only */
    ngx_http_conductor_model_t       *model;     /* models only */
    ngx_http_conductor_client_t      *client;    /* clients only */
    ngx_http_conductor_node_t         node;
    ngx_str_t                         labels;    /* Prometheus, escaped */
} ngx_http_conductor_status_item_t;


typedef struct {
    ngx_pool_t                       *pool;
    ngx_http_conductor_main_conf_t   *cmcf;
    time_t                            now;
    uint64_t                          now_ms;
    ngx_int_t                         recent;    /* ?recent=, -1: none */
    ngx_uint_t                        minutes;   /* ?history=, 0: none */

    /* per scope, in configuration order; the keys provider by provider */
    ngx_http_conductor_status_item_t *items[NGX_HTTP_CONDUCTOR_STATUS_NSCOPES];
    ngx_uint_t                        nitems[NGX_HTTP_CONDUCTOR_STATUS_NSCOPES];

    ngx_http_conductor_node_t         totals;    /* over providers */
    ngx_http_conductor_node_t         gateway;   /* answers of its own */
} ngx_http_conductor_status_t;


typedef struct {
    const char                       *name;
    const char                       *type;
    const char                       *help;
    ngx_uint_t                        scope;
    ngx_uint_t                        what;
} ngx_http_conductor_status_family_t;


/* one sample of a family for one item */
typedef struct {
    const char                       *label;     /* NULL: none */
    uint64_t                          value;
    ngx_http_conductor_money_t        money;     /* unit U_PICO */
    ngx_uint_t                        unit;
} ngx_http_conductor_status_value_t;


/* the response body as it is written, buffer after buffer */
typedef struct {
    ngx_pool_t                       *pool;
    ngx_chain_t                      *first;
    ngx_chain_t                     **last;
    ngx_buf_t                        *buf;
} ngx_http_conductor_status_out_t;


static ngx_int_t ngx_http_conductor_status_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_conductor_status_format(ngx_http_request_t *r);
static ngx_int_t ngx_http_conductor_status_snapshot(ngx_http_request_t *r,
    ngx_http_conductor_status_t *st);
static void ngx_http_conductor_status_copy(ngx_http_conductor_node_t *dst,
    ngx_http_conductor_node_t *src);
static void ngx_http_conductor_status_add(ngx_http_conductor_node_t *sum,
    ngx_http_conductor_node_t *n);
static ngx_uint_t ngx_http_conductor_status_shown(
    ngx_http_conductor_node_t *n);
static void ngx_http_conductor_status_spent(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *it);
static ngx_uint_t *ngx_http_conductor_status_limits(
    ngx_http_conductor_status_item_t *it);
static void ngx_http_conductor_status_tokens(ngx_http_conductor_node_t *n,
    uint64_t *tokens);
static uint64_t ngx_http_conductor_status_cooldown(
    ngx_http_conductor_status_t *st, ngx_http_conductor_node_t *n);

static ngx_int_t ngx_http_conductor_status_json(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_out_t *out);
static json_t *ngx_http_conductor_status_json_str(
    ngx_http_conductor_status_t *st, ngx_str_t *s);
static json_t *ngx_http_conductor_status_json_totals(json_t *obj,
    ngx_http_conductor_node_t *n);
static json_t *ngx_http_conductor_status_json_counts(const char **names,
    uint64_t *values, ngx_uint_t n);
static json_t *ngx_http_conductor_status_json_provider(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_item_t *p,
    ngx_http_conductor_status_item_t *keys);
static json_t *ngx_http_conductor_status_json_key(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_item_t *k);
static json_t *ngx_http_conductor_status_json_limits(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_item_t *k);
static json_t *ngx_http_conductor_status_json_model(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_item_t *m);
static json_t *ngx_http_conductor_status_json_client(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_item_t *c);
static json_t *ngx_http_conductor_status_json_budgets(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_item_t *c);

static ngx_int_t ngx_http_conductor_status_prometheus(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_out_t *out);
static ngx_int_t ngx_http_conductor_status_prometheus_redis(
    ngx_http_conductor_status_out_t *out);
static ngx_int_t ngx_http_conductor_status_sample(
    ngx_http_conductor_status_out_t *out, const char *scope,
    ngx_http_conductor_status_family_t *fam,
    ngx_http_conductor_status_item_t *it,
    ngx_http_conductor_status_value_t *v);
static ngx_int_t ngx_http_conductor_status_labels(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_item_t *it,
    ngx_uint_t scope);
static uintptr_t ngx_http_conductor_status_escape(u_char *dst, u_char *src,
    size_t size);
static ngx_uint_t ngx_http_conductor_status_values(
    ngx_http_conductor_status_t *st, ngx_http_conductor_status_item_t *it,
    ngx_uint_t what, ngx_http_conductor_status_value_t *v);

static ngx_int_t ngx_http_conductor_status_html(
    ngx_http_conductor_status_out_t *out);

static u_char *ngx_http_conductor_status_room(
    ngx_http_conductor_status_out_t *out, size_t len);
static ngx_int_t ngx_http_conductor_status_bad(ngx_http_request_t *r,
    ngx_http_conductor_status_out_t *out, const char *message);
static ngx_int_t ngx_http_conductor_status_dump(json_t *root,
    ngx_http_conductor_status_out_t *out);
static ngx_int_t ngx_http_conductor_status_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_uint_t format, ngx_chain_t *out);


static ngx_str_t  ngx_http_conductor_status_types[] = {
    ngx_string("application/json"),
    ngx_string("text/plain; version=0.0.4; charset=utf-8"),
    ngx_string("text/html; charset=utf-8")
};


/* the most samples one family has for an item: an error class each */
#define NGX_HTTP_CONDUCTOR_STATUS_NVALUES                                    \
    ngx_max(NGX_HTTP_CONDUCTOR_NERRORS, NGX_HTTP_CONDUCTOR_NLIMITS)


static const char  *ngx_http_conductor_status_limit_names[] = {
    "rpm", "tpm", "rph", "tph", "rpd", "tpd"
};


static const char  *ngx_http_conductor_status_error_names[] = {
    "4xx", "429", "5xx", "timeout", "connect",
    "stream_cut", "stream_timeout"
};


static const char  *ngx_http_conductor_status_token_names[] = {
    "prompt", "completion", "cached", "cache_creation", "reasoning"
};


static const char  *ngx_http_conductor_status_breaker_names[] = {
    "closed", "open", "half_open"
};


static const char  *ngx_http_conductor_status_scope_names[] = {
    "key", "provider", "model", "client"
};


/* the name of each family's extra label, indexed by NGX_HTTP_CONDUCTOR_M_* */
static const char  *ngx_http_conductor_status_label_names[] = {
    NULL, NULL, "class", "type", NULL, NULL, NULL,
    NULL, NULL, "limit", NULL, NULL, NULL, NULL,
    "limit", "limit", "period", "period", "period"
};


/*
 * A provider and a model alias count each client request once, by the
 * answer the client got; the failed attempts of a failover show on the keys.
 */

#define ngx_http_conductor_totals_families(scope, noun)                       \
    { "requests_total", "counter",                                            \
      "Client requests answered through the " noun ".",                       \
      scope, NGX_HTTP_CONDUCTOR_M_REQUESTS },                                 \
    { "responses_total", "counter",                                           \
      "2xx answers to clients through the " noun ".",                         \
      scope, NGX_HTTP_CONDUCTOR_M_RESPONSES },                                \
    { "errors_total", "counter",                                              \
      "Error answers to clients through the " noun ", by class.",             \
      scope, NGX_HTTP_CONDUCTOR_M_ERRORS },                                   \
    { "tokens_total", "counter",                                              \
      "Tokens of the answers through the " noun ", by type.",                 \
      scope, NGX_HTTP_CONDUCTOR_M_TOKENS },                                   \
    { "cost_usd_total", "counter",                                            \
      "Cost in USD of the answers through the " noun ".",                     \
      scope, NGX_HTTP_CONDUCTOR_M_COST },                                     \
    { "estimated_total", "counter",                                           \
      "Answers through the " noun " whose usage was estimated.",              \
      scope, NGX_HTTP_CONDUCTOR_M_ESTIMATED },                                \
    { "unpriced_total", "counter",                                            \
      "Answers through the " noun " without a price.",                        \
      scope, NGX_HTTP_CONDUCTOR_M_UNPRICED }


static ngx_http_conductor_status_family_t  ngx_http_conductor_status_families[]
    = {

    { "requests_total", "counter",
      "Attempts sent with the key.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_REQUESTS },
    { "responses_total", "counter",
      "2xx answers to attempts sent with the key.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_RESPONSES },
    { "errors_total", "counter",
      "Failed attempts with the key, by class.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_ERRORS },
    { "tokens_total", "counter",
      "Tokens used with the key, by type.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_TOKENS },
    { "cost_usd_total", "counter",
      "Cost in USD of the answers to the key.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_COST },
    { "estimated_total", "counter",
      "Answers to the key whose usage was estimated.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_ESTIMATED },
    { "unpriced_total", "counter",
      "Answers to the key without a price.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_UNPRICED },
    { "inflight", "gauge",
      "Attempts with the key waiting for their answer.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_INFLIGHT },
    { "ttfb_seconds", "gauge",
      "Time to first byte of the key's answers (moving average).",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_TTFB },
    { "limit_remaining", "gauge",
      "What the key may still send in the window of each configured limit.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_REMAINING },
    { "cooldown_seconds", "gauge",
      "Seconds until the key leaves its cooldown (0: none).",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_COOLDOWN },
    { "breaker_state", "gauge",
      "Circuit breaker of the key: 0 closed, 1 open, 2 half open.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_BREAKER },
    { "consecutive_failures", "gauge",
      "Failed attempts with the key since its last success.",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_FAILURES },
    { "disabled", "gauge",
      "1 when the provider refused the key (401 or 403).",
      NGX_HTTP_CONDUCTOR_S_KEY, NGX_HTTP_CONDUCTOR_M_DISABLED },

    ngx_http_conductor_totals_families(NGX_HTTP_CONDUCTOR_S_PROVIDER,
                                       "provider"),
    ngx_http_conductor_totals_families(NGX_HTTP_CONDUCTOR_S_MODEL,
                                       "model alias"),

    /* a client counts each of its requests once, the refused ones too
     * (429 at its limit or budget, 403 for a model it may not use): what
     * it was answered, whatever the keys that tried */

    { "requests_total", "counter",
      "Requests of the client, the refused ones included.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_REQUESTS },
    { "responses_total", "counter",
      "2xx answers to the client.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_RESPONSES },
    { "errors_total", "counter",
      "Error answers to the client, by class.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_ERRORS },
    { "tokens_total", "counter",
      "Tokens of the answers to the client, by type.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_TOKENS },
    { "cost_usd_total", "counter",
      "Cost in USD of the answers to the client.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_COST },
    { "estimated_total", "counter",
      "Answers to the client whose usage was estimated.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_ESTIMATED },
    { "unpriced_total", "counter",
      "Answers to the client without a price.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_UNPRICED },
    { "inflight", "gauge",
      "Requests of the client waiting for their answer.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_INFLIGHT },
    { "limit", "gauge",
      "Each configured limit of the client.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_LIMIT },
    { "limit_used", "gauge",
      "What the client used in the window of each configured limit.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_USED },
    { "limit_remaining", "gauge",
      "What the client may still send in the window of each configured "
      "limit.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_REMAINING },
    { "budget_usd", "gauge",
      "Each configured budget of the client in USD, by period.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_BUDGET },
    { "budget_spent_usd", "gauge",
      "USD the client spent in the current period of each budget.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_SPENT },
    { "budget_reserved_usd", "gauge",
      "USD held on each budget for the client's requests in flight.",
      NGX_HTTP_CONDUCTOR_S_CLIENT, NGX_HTTP_CONDUCTOR_M_RESERVED }
};




char *
ngx_http_conductor_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_conductor_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_conductor_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc, recent;
    ngx_uint_t                       format, minutes;
    const char                      *error;
    ngx_http_conductor_ctx_t        *ctx;
    ngx_http_conductor_status_t      st;
    ngx_http_conductor_status_out_t  out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    /* behind conductor_auth, the status (every client, every key) is for
     * admin clients only */
    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx && ctx->client && !ctx->client->admin) {
        ctx->error = ngx_http_conductor_error_message(r,
                         "client \"%V\" may not read the gateway's status "
                         "(\"admin on\" in its conductor_client)",
                         &ctx->client->name);
        return NGX_HTTP_FORBIDDEN;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    format = ngx_http_conductor_status_format(r);
    if (format == NGX_CONF_UNSET_UINT) {
        return NGX_HTTP_BAD_REQUEST;
    }

    out.pool = r->pool;
    out.first = NULL;
    out.last = &out.first;
    out.buf = NULL;

    /* the JSON's recent requests and history; the other formats have none */
    recent = -1;
    minutes = 0;

    if (format == NGX_HTTP_CONDUCTOR_STATUS_JSON
        && ngx_http_conductor_history_args(r, &recent, &minutes, &error)
           != NGX_OK)
    {
        return ngx_http_conductor_status_bad(r, &out, error);
    }

    switch (format) {

    case NGX_HTTP_CONDUCTOR_STATUS_HTML:
        rc = ngx_http_conductor_status_html(&out);
        break;

    default:
        if (ngx_http_conductor_status_snapshot(r, &st) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        st.recent = recent;
        st.minutes = minutes;

        rc = (format == NGX_HTTP_CONDUCTOR_STATUS_JSON)
             ? ngx_http_conductor_status_json(&st, &out)
             : ngx_http_conductor_status_prometheus(&st, &out);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_conductor_status_send(r, NGX_HTTP_OK, format, out.first);
}


/* a query the status cannot answer: 400, in OpenAI's error shape */

static ngx_int_t
ngx_http_conductor_status_bad(ngx_http_request_t *r,
    ngx_http_conductor_status_out_t *out, const char *message)
{
    json_t  *root;

    root = json_pack("{s:{s:s, s:s, s:n, s:n}}",
                     "error",
                         "message", message,
                         "type", "invalid_request_error",
                         "param",
                         "code");

    if (root == NULL || ngx_http_conductor_status_dump(root, out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_conductor_status_send(r, NGX_HTTP_BAD_REQUEST,
                                          NGX_HTTP_CONDUCTOR_STATUS_JSON,
                                          out->first);
}


/*
 * ?format= decides; else an Accept that asks for text/plain and not for
 * JSON (what Prometheus sends) gets the exposition format.
 */

static ngx_uint_t
ngx_http_conductor_status_format(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_str_t   value;

    if (ngx_http_arg(r, (u_char *) "format", sizeof("format") - 1, &value)
        == NGX_OK)
    {
        if (value.len == 4 && ngx_strncmp(value.data, "json", 4) == 0) {
            return NGX_HTTP_CONDUCTOR_STATUS_JSON;
        }

        if (value.len == 10 && ngx_strncmp(value.data, "prometheus", 10) == 0)
        {
            return NGX_HTTP_CONDUCTOR_STATUS_PROMETHEUS;
        }

        if (value.len == 4 && ngx_strncmp(value.data, "html", 4) == 0) {
            return NGX_HTTP_CONDUCTOR_STATUS_HTML;
        }

        return NGX_CONF_UNSET_UINT;
    }

#if (NGX_HTTP_GZIP || NGX_HTTP_HEADERS)

    if (r->headers_in.accept) {
        p = r->headers_in.accept->value.data;
        last = p + r->headers_in.accept->value.len;

        if (ngx_strlcasestrn(p, last, (u_char *) "text/plain",
                             sizeof("text/plain") - 2)
            && ngx_strlcasestrn(p, last, (u_char *) "application/json",
                                sizeof("application/json") - 2)
               == NULL)
        {
            return NGX_HTTP_CONDUCTOR_STATUS_PROMETHEUS;
        }
    }

#else
    (void) p;
    (void) last;
#endif

    return NGX_HTTP_CONDUCTOR_STATUS_JSON;
}


/*
 * Copies every node the report shows.  The arrays are allocated before the
 * lock is taken, so nothing can fail and nothing slow runs while it is held.
 */

static ngx_int_t
ngx_http_conductor_status_snapshot(ngx_http_request_t *r,
    ngx_http_conductor_status_t *st)
{
    ngx_uint_t                         i, j, n, nk;
    ngx_time_t                        *tp;
    ngx_http_conductor_key_t          *key;
    ngx_http_conductor_model_t       **m, *model;
    ngx_http_conductor_client_t      **cl;
    ngx_http_conductor_provider_t    **p;
    ngx_http_conductor_main_conf_t    *cmcf;
    ngx_http_conductor_status_item_t  *it, *k;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    ngx_memzero(st, sizeof(ngx_http_conductor_status_t));

    st->pool = r->pool;
    st->cmcf = cmcf;
    st->recent = -1;

    tp = ngx_timeofday();
    st->now = tp->sec;
    st->now_ms = (uint64_t) tp->sec * 1000 + tp->msec;

    if (cmcf->sh == NULL) {
        /* no provider, no zone: an empty report */
        return NGX_OK;
    }

    p = cmcf->providers.elts;
    m = cmcf->models.elts;

    nk = 0;

    for (i = 0; i < cmcf->providers.nelts; i++) {
        nk += p[i]->keys.nelts;
    }

    st->nitems[NGX_HTTP_CONDUCTOR_S_PROVIDER] = cmcf->providers.nelts;
    st->nitems[NGX_HTTP_CONDUCTOR_S_KEY] = nk;
    st->nitems[NGX_HTTP_CONDUCTOR_S_MODEL] = cmcf->models.nelts
                                             + NGX_HTTP_CONDUCTOR_NDIALECTS;
    st->nitems[NGX_HTTP_CONDUCTOR_S_CLIENT] = cmcf->clients.nelts;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_STATUS_NSCOPES; i++) {
        st->items[i] = ngx_pcalloc(r->pool,
                                   (st->nitems[i] + 1)
                                   * sizeof(ngx_http_conductor_status_item_t));
        if (st->items[i] == NULL) {
            return NGX_ERROR;
        }
    }

    it = st->items[NGX_HTTP_CONDUCTOR_S_PROVIDER];
    k = st->items[NGX_HTTP_CONDUCTOR_S_KEY];

    for (i = 0; i < cmcf->providers.nelts; i++) {
        it[i].name = p[i]->name;
        it[i].provider = p[i];

        key = p[i]->keys.elts;

        for (j = 0; j < p[i]->keys.nelts; j++) {
            k->name = key[j].name;
            k->provider = p[i];
            k->key = &key[j];
            k++;
        }
    }

    it = st->items[NGX_HTTP_CONDUCTOR_S_MODEL];

    for (i = 0; i < st->nitems[NGX_HTTP_CONDUCTOR_S_MODEL]; i++) {
        if (i < cmcf->models.nelts) {
            it[i].model = m[i];
            it[i].name = m[i]->name;
            continue;
        }

        model = &cmcf->passthrough[i - cmcf->models.nelts];
        it[i].model = model;

        if (i - cmcf->models.nelts == NGX_HTTP_CONDUCTOR_OPENAI) {
            ngx_str_set(&it[i].name, "(unknown openai)");

        } else {
            ngx_str_set(&it[i].name, "(unknown anthropic)");
        }
    }

    it = st->items[NGX_HTTP_CONDUCTOR_S_CLIENT];
    cl = cmcf->clients.elts;

    for (i = 0; i < cmcf->clients.nelts; i++) {
        it[i].name = cl[i]->name;
        it[i].client = cl[i];
    }

    ngx_http_conductor_shm_lock(cmcf);

    for (i = 0; i < NGX_HTTP_CONDUCTOR_STATUS_NSCOPES; i++) {
        it = st->items[i];

        for (j = 0; j < st->nitems[i]; j++) {
            ngx_http_conductor_status_copy(&it[j].node,
                                           it[j].key ? it[j].key->node
                                           : it[j].model ? it[j].model->node
                                           : it[j].client ? it[j].client->node
                                           : it[j].provider->node);
        }
    }

    ngx_http_conductor_status_copy(&st->gateway, &cmcf->sh->gateway);

    ngx_http_conductor_shm_unlock(cmcf);

    it = st->items[NGX_HTTP_CONDUCTOR_S_CLIENT];

    for (i = 0; i < st->nitems[NGX_HTTP_CONDUCTOR_S_CLIENT]; i++) {
        ngx_http_conductor_status_spent(st, &it[i]);
    }

    it = st->items[NGX_HTTP_CONDUCTOR_S_PROVIDER];

    for (i = 0; i < st->nitems[NGX_HTTP_CONDUCTOR_S_PROVIDER]; i++) {
        ngx_http_conductor_status_add(&st->totals, &it[i].node);
    }

    /* what the gateway refused itself is in the totals too */
    ngx_http_conductor_status_add(&st->totals, &st->gateway);

    /* the pseudo-models of unknown names are shown once they were used */

    it = st->items[NGX_HTTP_CONDUCTOR_S_MODEL];
    n = cmcf->models.nelts;

    for (i = cmcf->models.nelts; i < st->nitems[NGX_HTTP_CONDUCTOR_S_MODEL];
         i++)
    {
        if (ngx_http_conductor_status_shown(&it[i].node)) {
            it[n++] = it[i];
        }
    }

    st->nitems[NGX_HTTP_CONDUCTOR_S_MODEL] = n;

    return NGX_OK;
}


/* the counters only: the name stays in the zone, the conf has it */

static void
ngx_http_conductor_status_copy(ngx_http_conductor_node_t *dst,
    ngx_http_conductor_node_t *src)
{
    ngx_memcpy(dst, src, offsetof(ngx_http_conductor_node_t, name));
}


static void
ngx_http_conductor_status_add(ngx_http_conductor_node_t *sum,
    ngx_http_conductor_node_t *n)
{
    ngx_uint_t  i;

    sum->requests += n->requests;
    sum->responses += n->responses;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NERRORS; i++) {
        sum->errors[i] += n->errors[i];
    }

    sum->prompt_tokens += n->prompt_tokens;
    sum->completion_tokens += n->completion_tokens;
    sum->cached_tokens += n->cached_tokens;
    sum->cache_creation_tokens += n->cache_creation_tokens;
    sum->reasoning_tokens += n->reasoning_tokens;
    sum->cost = ngx_http_conductor_money_add(sum->cost, n->cost);
    sum->estimated += n->estimated;
    sum->unpriced += n->unpriced;
}


/* used at all: a pseudo-model whose every attempt failed counts too */

static ngx_uint_t
ngx_http_conductor_status_shown(ngx_http_conductor_node_t *n)
{
    ngx_uint_t  i;

    if (n->requests) {
        return 1;
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NERRORS; i++) {
        if (n->errors[i]) {
            return 1;
        }
    }

    return 0;
}


/*
 * The ledger starts a budget's spend again lazily, at the client's next
 * request of a new day or month: until then the copy still holds the
 * spend of a period that is over, which counts as nothing spent.
 */

static void
ngx_http_conductor_status_spent(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *it)
{
    time_t                       ends;
    ngx_uint_t                   p;
    ngx_http_conductor_spend_t  *sp;

    for (p = 0; p < NGX_HTTP_CONDUCTOR_NPERIODS; p++) {
        sp = &it->node.spend[p];

        if (sp->period != ngx_http_conductor_budget_period(p, st->now, &ends))
        {
            ngx_memzero(&sp->spent, sizeof(ngx_http_conductor_money_t));
        }
    }
}


/* what a limit of the item is: 0 for one it does not have */

static ngx_uint_t *
ngx_http_conductor_status_limits(ngx_http_conductor_status_item_t *it)
{
    return it->client ? it->client->limit : it->key->limit;
}


/* in the order of ngx_http_conductor_status_token_names */

static void
ngx_http_conductor_status_tokens(ngx_http_conductor_node_t *n,
    uint64_t *tokens)
{
    tokens[0] = n->prompt_tokens;
    tokens[1] = n->completion_tokens;
    tokens[2] = n->cached_tokens;
    tokens[3] = n->cache_creation_tokens;
    tokens[4] = n->reasoning_tokens;
}


/* ms left in the key's cooldown, 0 when it has none */

static uint64_t
ngx_http_conductor_status_cooldown(ngx_http_conductor_status_t *st,
    ngx_http_conductor_node_t *n)
{
    return (n->cooldown_until > st->now_ms) ? n->cooldown_until - st->now_ms
                                             : 0;
}


static ngx_int_t
ngx_http_conductor_status_json(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_out_t *out)
{
    json_t                            *root, *providers, *models, *clients;
    json_t                            *obj;
    ngx_uint_t                         i;
    ngx_http_conductor_status_item_t  *it, *keys;

    /* "o" hands each value over to the tree, on failure too */
    providers = json_array();
    models = json_array();
    clients = json_array();

    /* "gateway": the routed requests it answered itself (429, 503, 400) */
    root = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o}",
                     "module", "ngx_http_conductor_module",
                     "version", NGX_HTTP_CONDUCTOR_VERSION,
                     "nginx", NGINX_VERSION,
                     "time", (json_int_t) st->now,
                     "totals",
                     ngx_http_conductor_status_json_totals(json_object(),
                                                           &st->totals),
                     "gateway",
                     ngx_http_conductor_status_json_totals(json_object(),
                                                           &st->gateway),
                     "providers", providers,
                     "models", models,
                     "clients", clients);
    if (root == NULL) {
        return NGX_ERROR;
    }

    /* "redis": the fleet store's connection, when there is one */
    if (ngx_http_conductor_redis_status(root) != NGX_OK) {
        goto failed;
    }

    /* "recent" and "history", when asked for */
    if (ngx_http_conductor_history_json(st->cmcf, st->pool, root, st->recent,
                                        st->minutes, st->now)
        != NGX_OK)
    {
        goto failed;
    }

    it = st->items[NGX_HTTP_CONDUCTOR_S_PROVIDER];
    keys = st->items[NGX_HTTP_CONDUCTOR_S_KEY];

    for (i = 0; i < st->nitems[NGX_HTTP_CONDUCTOR_S_PROVIDER]; i++) {
        obj = ngx_http_conductor_status_json_provider(st, &it[i], keys);

        if (json_array_append_new(providers, obj) != 0) {
            goto failed;
        }

        keys += it[i].provider->keys.nelts;
    }

    it = st->items[NGX_HTTP_CONDUCTOR_S_MODEL];

    for (i = 0; i < st->nitems[NGX_HTTP_CONDUCTOR_S_MODEL]; i++) {
        obj = ngx_http_conductor_status_json_model(st, &it[i]);

        if (json_array_append_new(models, obj) != 0) {
            goto failed;
        }
    }

    it = st->items[NGX_HTTP_CONDUCTOR_S_CLIENT];

    for (i = 0; i < st->nitems[NGX_HTTP_CONDUCTOR_S_CLIENT]; i++) {
        obj = ngx_http_conductor_status_json_client(st, &it[i]);

        if (json_array_append_new(clients, obj) != 0) {
            goto failed;
        }
    }

    return ngx_http_conductor_status_dump(root, out);

failed:

    json_decref(root);

    return NGX_ERROR;
}


/* the document into the body, one line; root is released */

static ngx_int_t
ngx_http_conductor_status_dump(json_t *root,
    ngx_http_conductor_status_out_t *out)
{
    size_t   len, flags;
    u_char  *p;

    /* 15 digits print a pico-USD sum as the decimal it is */
    flags = JSON_COMPACT | JSON_REAL_PRECISION(15);

    len = json_dumpb(root, NULL, 0, flags);
    if (len == 0) {
        goto failed;
    }

    p = ngx_http_conductor_status_room(out, len + 1);
    if (p == NULL) {
        goto failed;
    }

    if (json_dumpb(root, (char *) p, len, flags) != len) {
        goto failed;
    }

    p[len] = '\n';
    out->buf->last = p + len + 1;

    json_decref(root);

    return NGX_OK;

failed:

    json_decref(root);

    return NGX_ERROR;
}


/*
 * jansson takes UTF-8 only: a name that is not is shown with '?' in place
 * of its other bytes rather than failing the whole report.
 */

static json_t *
ngx_http_conductor_status_json_str(ngx_http_conductor_status_t *st,
    ngx_str_t *s)
{
    return ngx_http_conductor_json_str(st->pool, s);
}


json_t *
ngx_http_conductor_json_str(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;
    size_t   i;
    json_t  *j;

    j = json_stringn((const char *) s->data, s->len);
    if (j) {
        return j;
    }

    p = ngx_pnalloc(pool, s->len);
    if (p == NULL) {
        return NULL;
    }

    for (i = 0; i < s->len; i++) {
        p[i] = (s->data[i] < 0x80 && s->data[i] != '\0') ? s->data[i] : '?';
    }

    return json_stringn((const char *) p, s->len);
}


/* adds the fields every provider, key and model has; NULL on failure */

static json_t *
ngx_http_conductor_status_json_totals(json_t *obj,
    ngx_http_conductor_node_t *n)
{
    json_t    *tokens;
    uint64_t   t[NGX_HTTP_CONDUCTOR_STATUS_NTOKENS];

    ngx_http_conductor_status_tokens(n, t);

    tokens = ngx_http_conductor_status_json_counts(
                 ngx_http_conductor_status_token_names, t,
                 NGX_HTTP_CONDUCTOR_STATUS_NTOKENS);

    if (json_object_set_new(tokens, "total",
                            json_integer(n->prompt_tokens
                                         + n->completion_tokens))
        != 0)
    {
        /* json_object_set_new() has freed what it was given, not tokens */
        json_decref(tokens);
        tokens = NULL;
    }

    /* "o" hands errors and tokens over to the new object, on failure too */

    if (json_object_update_new(obj,
            json_pack("{s:I, s:I, s:o, s:o, s:f, s:I, s:I}",
                      "requests", (json_int_t) n->requests,
                      "responses", (json_int_t) n->responses,
                      "errors", ngx_http_conductor_status_json_counts(
                                    ngx_http_conductor_status_error_names,
                                    n->errors, NGX_HTTP_CONDUCTOR_NERRORS),
                      "tokens", tokens,
                      "cost_usd", ngx_http_conductor_money_to_double(n->cost),
                      "estimated", (json_int_t) n->estimated,
                      "unpriced", (json_int_t) n->unpriced))
        != 0)
    {
        json_decref(obj);
        return NULL;
    }

    return obj;
}


/* {"name0": values[0], ...}: errors by class, tokens by type */

static json_t *
ngx_http_conductor_status_json_counts(const char **names, uint64_t *values,
    ngx_uint_t n)
{
    json_t      *obj;
    ngx_uint_t   i;

    obj = json_object();

    for (i = 0; obj && i < n; i++) {
        if (json_object_set_new(obj, names[i], json_integer(values[i])) != 0) {
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}


static json_t *
ngx_http_conductor_status_json_provider(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *p, ngx_http_conductor_status_item_t *keys)
{
    json_t      *obj, *list;
    ngx_uint_t   i;

    obj = json_pack("{s:o, s:o, s:s, s:b, s:o}",
                    "name", ngx_http_conductor_status_json_str(st, &p->name),
                    "url",
                    ngx_http_conductor_status_json_str(st, &p->provider->url),
                    "api", p->provider->api == NGX_HTTP_CONDUCTOR_ANTHROPIC
                           ? "anthropic" : "openai",
                    "healthy", !p->node.unhealthy,
                    "breaker",
                    json_string(p->node.breaker == NGX_HTTP_CONDUCTOR_OPEN
                                ? "open"
                                : p->node.breaker
                                  == NGX_HTTP_CONDUCTOR_HALF_OPEN
                                  ? "half_open" : "closed"));

    obj = ngx_http_conductor_status_json_totals(obj, &p->node);
    list = json_array();

    if (json_object_set_new(obj, "keys", list) != 0) {
        json_decref(obj);
        return NULL;
    }

    for (i = 0; i < p->provider->keys.nelts; i++) {
        if (json_array_append_new(list,
                                  ngx_http_conductor_status_json_key(st,
                                                                     &keys[i]))
            != 0)
        {
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}


static json_t *
ngx_http_conductor_status_json_key(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *k)
{
    json_t                     *obj, *cooldown, *rreq, *rtok;
    ngx_http_conductor_node_t  *n;

    n = &k->node;

    obj = json_pack("{s:o}",
                    "name", ngx_http_conductor_status_json_str(st, &k->name));

    obj = ngx_http_conductor_status_json_totals(obj, n);

    cooldown = ngx_http_conductor_status_cooldown(st, n)
               ? json_integer(n->cooldown_until) : json_null();
    rreq = (n->remaining_requests >= 0)
           ? json_integer(n->remaining_requests) : json_null();
    rtok = (n->remaining_tokens >= 0)
           ? json_integer(n->remaining_tokens) : json_null();

    /* the average to a tenth of a ms: more digits would be noise */

    if (json_object_update_new(obj,
            json_pack("{s:I, s:I, s:I, s:f, s:I, s:s, s:o, s:b, s:o,"
                      " s:{s:o, s:o}}",
                      "inflight", (json_int_t) n->inflight,
                      "max_inflight", (json_int_t) k->key->max_inflight,
                      "ttfb_ms", (json_int_t) n->ttfb_ewma,
                      "ttfb_avg_ms", n->responses
                          ? (double) (n->ttfb_sum * 10 / n->responses) / 10
                          : 0.0,
                      "consecutive_failures", (json_int_t) n->failures,
                      "breaker", ngx_http_conductor_status_breaker_names[
                                     ngx_min(n->breaker, 2)],
                      "cooldown_until", cooldown,
                      "disabled", n->disabled != 0,
                      "limits", ngx_http_conductor_status_json_limits(st, k),
                      "provider_remaining",
                          "requests", rreq,
                          "tokens", rtok))
        != 0)
    {
        json_decref(obj);
        return NULL;
    }

    return obj;
}


/*
 * only the limits the key or client has:
 * {"rpm":{"limit":..,"used":..}, ...}
 */

static json_t *
ngx_http_conductor_status_json_limits(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *k)
{
    time_t       period;
    json_t      *obj;
    uint64_t     used, limit;
    ngx_uint_t   i, *limits;

    obj = json_object();
    limits = ngx_http_conductor_status_limits(k);

    for (i = 0; obj && i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {
        limit = limits[i];

        if (limit == 0) {
            continue;
        }

        period = ngx_http_conductor_periods[i];
        used = ngx_http_conductor_window_value(&k->node.win[i], period,
                                               st->now);

        if (json_object_set_new(obj, ngx_http_conductor_status_limit_names[i],
                json_pack("{s:I, s:I, s:I, s:I}",
                          "limit", (json_int_t) limit,
                          "used", (json_int_t) used,
                          "remaining",
                          (json_int_t) (used < limit ? limit - used : 0),
                          "reset_s", (json_int_t) (period - st->now % period)))
            != 0)
        {
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}


static json_t *
ngx_http_conductor_status_json_model(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *m)
{
    json_t                       *obj, *targets;
    ngx_uint_t                    i;
    ngx_http_conductor_target_t  *t;

    /* the pseudo-models have no target array: any provider of the API */
    targets = json_array();
    t = m->model->targets.elts;

    for (i = 0; targets && t && i < m->model->targets.nelts; i++) {
        if (json_array_append_new(targets,
                json_pack("{s:o, s:o, s:I, s:I}",
                          "provider",
                          ngx_http_conductor_status_json_str(st,
                                                        &t[i].provider->name),
                          "model",
                          ngx_http_conductor_status_json_str(st, &t[i].model),
                          "priority", (json_int_t) t[i].priority,
                          "weight", (json_int_t) t[i].weight))
            != 0)
        {
            json_decref(targets);
            return NULL;
        }
    }

    obj = json_pack("{s:o, s:b, s:o}",
                    "name", ngx_http_conductor_status_json_str(st, &m->name),
                    "builtin", (int) m->model->builtin,
                    "targets", targets);

    return ngx_http_conductor_status_json_totals(obj, &m->node);
}


/*
 * A client by its name only: neither its keys nor their digests are in
 * the report.  "unpriced" is already the count of unpriced answers, so
 * what the client does with a model without a price is "unpriced_mode".
 */

static json_t *
ngx_http_conductor_status_json_client(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *c)
{
    json_t                        *obj, *models;
    ngx_uint_t                     i;
    ngx_http_conductor_model_t   **m;
    ngx_http_conductor_client_t   *cl;

    cl = c->client;

    /* null: every model */
    models = cl->models ? json_array() : json_null();
    m = cl->models ? cl->models->elts : NULL;

    for (i = 0; models && m && i < cl->models->nelts; i++) {
        if (json_array_append_new(models,
                                  ngx_http_conductor_status_json_str(st,
                                                               &m[i]->name))
            != 0)
        {
            json_decref(models);
            models = NULL;
        }
    }

    obj = json_pack("{s:o}",
                    "name", ngx_http_conductor_status_json_str(st, &c->name));

    obj = ngx_http_conductor_status_json_totals(obj, &c->node);

    if (json_object_update_new(obj,
            json_pack("{s:I, s:I, s:o, s:o, s:o, s:s, s:b}",
                      "inflight", (json_int_t) c->node.inflight,
                      "max_inflight", (json_int_t) cl->max_inflight,
                      "limits", ngx_http_conductor_status_json_limits(st, c),
                      "models", models,
                      "budgets",
                          ngx_http_conductor_status_json_budgets(st, c),
                      "unpriced_mode",
                          cl->unpriced_tokens ? "tokens" : "refuse",
                      "admin", (int) cl->admin))
        != 0)
    {
        json_decref(obj);
        return NULL;
    }

    return obj;
}


/*
 * Only the budgets the client has: {"day":{"usd":..,"spent_usd":..,
 * "reserved_usd":..,"remaining_usd":..,"resets":epoch}, ...}.  What
 * remains is what a request may still reserve: the requests in flight
 * hold their part already.
 */

static json_t *
ngx_http_conductor_status_json_budgets(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *c)
{
    time_t                        ends;
    json_t                       *obj;
    ngx_uint_t                    p;
    ngx_http_conductor_money_t    used, left;
    ngx_http_conductor_spend_t   *sp;
    ngx_http_conductor_client_t  *cl;

    cl = c->client;
    obj = json_object();

    for (p = 0; obj && p < NGX_HTTP_CONDUCTOR_NPERIODS; p++) {

        if (!(cl->budgets & (1 << p))) {
            continue;
        }

        sp = &c->node.spend[p];
        used = ngx_http_conductor_money_add(sp->spent, sp->reserved);
        left = ngx_http_conductor_money_sub(cl->budget[p], used);

        (void) ngx_http_conductor_budget_period(p, st->now, &ends);

        if (json_object_set_new(obj,
                (const char *) ngx_http_conductor_budget_period_name(p)->data,
                json_pack("{s:f, s:f, s:f, s:f, s:o}",
                          "usd",
                          ngx_http_conductor_money_to_double(cl->budget[p]),
                          "spent_usd",
                          ngx_http_conductor_money_to_double(sp->spent),
                          "reserved_usd",
                          ngx_http_conductor_money_to_double(sp->reserved),
                          "remaining_usd",
                          ngx_http_conductor_money_to_double(left),
                          "resets", ends ? json_integer(ends) : json_null()))
            != 0)
        {
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}


/*
 * The text exposition format: a family at a time, its HELP and TYPE once,
 * then one sample per item (and per class, type or limit).
 */

static ngx_int_t
ngx_http_conductor_status_prometheus(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_out_t *out)
{
    u_char                              *p;
    const char                          *scope;
    ngx_uint_t                           f, i, j, n;
    ngx_http_conductor_status_item_t    *it;
    ngx_http_conductor_status_value_t    v[NGX_HTTP_CONDUCTOR_STATUS_NVALUES];
    ngx_http_conductor_status_family_t  *fam;

    for (f = 0; f < NGX_HTTP_CONDUCTOR_STATUS_NSCOPES; f++) {
        it = st->items[f];

        for (i = 0; i < st->nitems[f]; i++) {
            if (ngx_http_conductor_status_labels(st, &it[i], f) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    for (f = 0; f < sizeof(ngx_http_conductor_status_families)
                    / sizeof(ngx_http_conductor_status_family_t); f++)
    {
        fam = &ngx_http_conductor_status_families[f];
        scope = ngx_http_conductor_status_scope_names[fam->scope];

        p = ngx_http_conductor_status_room(out,
                                           2 * NGX_HTTP_CONDUCTOR_STATUS_LINE);
        if (p == NULL) {
            return NGX_ERROR;
        }

        out->buf->last = ngx_sprintf(p, "# HELP conductor_%s_%s %s\n"
                                        "# TYPE conductor_%s_%s %s\n",
                                     scope, fam->name, fam->help,
                                     scope, fam->name, fam->type);

        it = st->items[fam->scope];

        for (i = 0; i < st->nitems[fam->scope]; i++) {
            n = ngx_http_conductor_status_values(st, &it[i], fam->what, v);

            for (j = 0; j < n; j++) {
                if (ngx_http_conductor_status_sample(out, scope, fam, &it[i],
                                                     &v[j])
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }
    }

    return ngx_http_conductor_status_prometheus_redis(out);
}


/*
 * The fleet store's connection and pushes, from the same numbers as the
 * JSON's "redis" object; nothing without conductor_redis.
 */

static ngx_int_t
ngx_http_conductor_status_prometheus_redis(
    ngx_http_conductor_status_out_t *out)
{
    u_char      *p;
    json_t      *root, *r, *v;
    ngx_uint_t   i;

    static const char  *counters[][3] = {
        { "commands_total", "commands", "commands sent to Redis" },
        { "errors_total", "errors", "timeouts, connection errors and error "
                                    "replies" },
        { "reconnects_total", "reconnects", "connection attempts after a "
                                            "worker's first" },
        { "sync_errors_total", "sync_errors", "fleet pushes that failed "
                                              "(their deltas kept)" },
    };

    root = json_object();
    if (root == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_conductor_redis_status(root) != NGX_OK) {
        json_decref(root);
        return NGX_ERROR;
    }

    r = json_object_get(root, "redis");

    if (r == NULL) {
        json_decref(root);
        return NGX_OK;
    }

    p = ngx_http_conductor_status_room(out,
                                       20 * NGX_HTTP_CONDUCTOR_STATUS_LINE);
    if (p == NULL) {
        json_decref(root);
        return NGX_ERROR;
    }

    v = json_object_get(r, "state");
    p = ngx_sprintf(p, "# HELP conductor_redis_up 1 when every worker's "
                       "connection to Redis is ready\n"
                       "# TYPE conductor_redis_up gauge\n"
                       "conductor_redis_up %d\n",
                    (v && ngx_strcmp(json_string_value(v), "ready") == 0));

    for (i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        v = json_object_get(r, counters[i][1]);
        p = ngx_sprintf(p, "# HELP conductor_redis_%s %s\n"
                           "# TYPE conductor_redis_%s counter\n"
                           "conductor_redis_%s %L\n",
                        counters[i][0], counters[i][2], counters[i][0],
                        counters[i][0],
                        (int64_t) (v ? json_integer_value(v) : 0));
    }

    v = json_object_get(r, "last_sync_age_ms");
    p = ngx_sprintf(p, "# HELP conductor_redis_last_sync_age_seconds since "
                       "the fleet's last push was answered (-1: never)\n"
                       "# TYPE conductor_redis_last_sync_age_seconds gauge\n"
                       "conductor_redis_last_sync_age_seconds %.3f\n",
                    v && json_is_integer(v)
                    ? (double) json_integer_value(v) / 1000 : -1.0);

    out->buf->last = p;

    json_decref(root);

    return NGX_OK;
}


/* name{labels[,label="value"]} value */

static ngx_int_t
ngx_http_conductor_status_sample(ngx_http_conductor_status_out_t *out,
    const char *scope, ngx_http_conductor_status_family_t *fam,
    ngx_http_conductor_status_item_t *it, ngx_http_conductor_status_value_t *v)
{
    u_char  *p;

    p = ngx_http_conductor_status_room(out, it->labels.len
                                            + NGX_HTTP_CONDUCTOR_STATUS_LINE);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p, "conductor_%s_%s{%V", scope, fam->name, &it->labels);

    if (v->label) {
        p = ngx_sprintf(p, ",%s=\"%s\"",
                        ngx_http_conductor_status_label_names[fam->what],
                        v->label);
    }

    switch (v->unit) {

    case NGX_HTTP_CONDUCTOR_U_MSEC:
        p = ngx_sprintf(p, "} %uL.%03uL\n", v->value / 1000, v->value % 1000);
        break;

    case NGX_HTTP_CONDUCTOR_U_PICO:
        p = ngx_http_conductor_cpy(p, "} ");
        p = ngx_http_conductor_money_format(p, v->money);
        *p++ = '\n';
        break;

    default:
        p = ngx_sprintf(p, "} %uL\n", v->value);
    }

    out->buf->last = p;

    return NGX_OK;
}


/*
 * provider="p",key="k" / provider="p" / model="m" / client="c", escaped
 * once per item
 */

static ngx_int_t
ngx_http_conductor_status_labels(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *it, ngx_uint_t scope)
{
    u_char     *p;
    size_t      len;
    ngx_str_t  *first;

    first = (scope == NGX_HTTP_CONDUCTOR_S_MODEL
             || scope == NGX_HTTP_CONDUCTOR_S_CLIENT)
            ? &it->name : &it->provider->name;

    len = sizeof("provider=\"\",key=\"\"") + first->len
          + ngx_http_conductor_status_escape(NULL, first->data, first->len);

    if (scope == NGX_HTTP_CONDUCTOR_S_KEY) {
        len += it->name.len
               + ngx_http_conductor_status_escape(NULL, it->name.data,
                                                  it->name.len);
    }

    p = ngx_pnalloc(st->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    it->labels.data = p;

    if (scope == NGX_HTTP_CONDUCTOR_S_MODEL) {
        p = ngx_http_conductor_cpy(p, "model=\"");

    } else if (scope == NGX_HTTP_CONDUCTOR_S_CLIENT) {
        p = ngx_http_conductor_cpy(p, "client=\"");

    } else {
        p = ngx_http_conductor_cpy(p, "provider=\"");
    }

    p = (u_char *) ngx_http_conductor_status_escape(p, first->data,
                                                    first->len);
    *p++ = '"';

    if (scope == NGX_HTTP_CONDUCTOR_S_KEY) {
        p = ngx_http_conductor_cpy(p, ",key=\"");
        p = (u_char *) ngx_http_conductor_status_escape(p, it->name.data,
                                                        it->name.len);
        *p++ = '"';
    }

    it->labels.len = p - it->labels.data;

    return NGX_OK;
}


/*
 * A label value as the exposition format wants it: backslash, double
 * quote and line feed escaped.  Without dst, returns the bytes it adds.
 */

static uintptr_t
ngx_http_conductor_status_escape(u_char *dst, u_char *src, size_t size)
{
    ngx_uint_t  n;

    if (dst == NULL) {
        n = 0;

        while (size--) {
            if (*src == '\\' || *src == '"' || *src == '\n') {
                n++;
            }

            src++;
        }

        return (uintptr_t) n;
    }

    while (size--) {

        switch (*src) {

        case '\\':
        case '"':
            *dst++ = '\\';
            *dst++ = *src;
            break;

        case '\n':
            *dst++ = '\\';
            *dst++ = 'n';
            break;

        default:
            *dst++ = *src;
        }

        src++;
    }

    return (uintptr_t) dst;
}


/* the samples of a family for one item; v has room for STATUS_NVALUES */

static ngx_uint_t
ngx_http_conductor_status_values(ngx_http_conductor_status_t *st,
    ngx_http_conductor_status_item_t *it, ngx_uint_t what,
    ngx_http_conductor_status_value_t *v)
{
    time_t                      period;
    uint64_t                    used, t[NGX_HTTP_CONDUCTOR_STATUS_NTOKENS];
    ngx_uint_t                  i, n, *limits;
    ngx_http_conductor_node_t  *node;

    node = &it->node;

    v[0].label = NULL;
    v[0].unit = NGX_HTTP_CONDUCTOR_U_COUNT;

    switch (what) {

    case NGX_HTTP_CONDUCTOR_M_REQUESTS:
        v[0].value = node->requests;
        return 1;

    case NGX_HTTP_CONDUCTOR_M_RESPONSES:
        v[0].value = node->responses;
        return 1;

    case NGX_HTTP_CONDUCTOR_M_ERRORS:
        for (i = 0; i < NGX_HTTP_CONDUCTOR_NERRORS; i++) {
            v[i].label = ngx_http_conductor_status_error_names[i];
            v[i].value = node->errors[i];
            v[i].unit = NGX_HTTP_CONDUCTOR_U_COUNT;
        }

        return NGX_HTTP_CONDUCTOR_NERRORS;

    case NGX_HTTP_CONDUCTOR_M_TOKENS:
        ngx_http_conductor_status_tokens(node, t);

        for (i = 0; i < NGX_HTTP_CONDUCTOR_STATUS_NTOKENS; i++) {
            v[i].label = ngx_http_conductor_status_token_names[i];
            v[i].value = t[i];
            v[i].unit = NGX_HTTP_CONDUCTOR_U_COUNT;
        }

        return NGX_HTTP_CONDUCTOR_STATUS_NTOKENS;

    case NGX_HTTP_CONDUCTOR_M_COST:
        v[0].money = node->cost;
        v[0].unit = NGX_HTTP_CONDUCTOR_U_PICO;
        return 1;

    case NGX_HTTP_CONDUCTOR_M_ESTIMATED:
        v[0].value = node->estimated;
        return 1;

    case NGX_HTTP_CONDUCTOR_M_UNPRICED:
        v[0].value = node->unpriced;
        return 1;

    case NGX_HTTP_CONDUCTOR_M_INFLIGHT:
        v[0].value = node->inflight;
        return 1;

    case NGX_HTTP_CONDUCTOR_M_TTFB:
        /* a key never answered has no time to report */
        v[0].value = node->ttfb_ewma;
        v[0].unit = NGX_HTTP_CONDUCTOR_U_MSEC;
        return node->ttfb_ewma ? 1 : 0;

    case NGX_HTTP_CONDUCTOR_M_LIMIT:
    case NGX_HTTP_CONDUCTOR_M_USED:
    case NGX_HTTP_CONDUCTOR_M_REMAINING:
        n = 0;
        limits = ngx_http_conductor_status_limits(it);

        for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {
            if (limits[i] == 0) {
                continue;
            }

            period = ngx_http_conductor_periods[i];
            used = ngx_http_conductor_window_value(&node->win[i], period,
                                                   st->now);

            v[n].label = ngx_http_conductor_status_limit_names[i];
            v[n].value = (what == NGX_HTTP_CONDUCTOR_M_LIMIT) ? limits[i]
                         : (what == NGX_HTTP_CONDUCTOR_M_USED) ? used
                         : (used < limits[i]) ? limits[i] - used : 0;
            v[n].unit = NGX_HTTP_CONDUCTOR_U_COUNT;
            n++;
        }

        return n;

    case NGX_HTTP_CONDUCTOR_M_BUDGET:
    case NGX_HTTP_CONDUCTOR_M_SPENT:
    case NGX_HTTP_CONDUCTOR_M_RESERVED:
        n = 0;

        for (i = 0; i < NGX_HTTP_CONDUCTOR_NPERIODS; i++) {
            if (!(it->client->budgets & (1 << i))) {
                continue;
            }

            v[n].label = (const char *)
                         ngx_http_conductor_budget_period_name(i)->data;
            v[n].money = (what == NGX_HTTP_CONDUCTOR_M_BUDGET)
                         ? it->client->budget[i]
                         : (what == NGX_HTTP_CONDUCTOR_M_SPENT)
                         ? node->spend[i].spent : node->spend[i].reserved;
            v[n].unit = NGX_HTTP_CONDUCTOR_U_PICO;
            n++;
        }

        return n;

    case NGX_HTTP_CONDUCTOR_M_COOLDOWN:
        v[0].value = ngx_http_conductor_status_cooldown(st, node);
        v[0].unit = NGX_HTTP_CONDUCTOR_U_MSEC;
        return 1;

    case NGX_HTTP_CONDUCTOR_M_BREAKER:
        v[0].value = node->breaker;
        return 1;

    case NGX_HTTP_CONDUCTOR_M_FAILURES:
        v[0].value = node->failures;
        return 1;

    default: /* NGX_HTTP_CONDUCTOR_M_DISABLED */
        v[0].value = (node->disabled != 0);
        return 1;
    }
}


/* the page is static: it asks for the JSON itself */

static ngx_int_t
ngx_http_conductor_status_html(ngx_http_conductor_status_out_t *out)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(out->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ngx_http_conductor_status_page;
    b->last = b->pos + sizeof(ngx_http_conductor_status_page) - 1;
    b->memory = 1;

    cl = ngx_alloc_chain_link(out->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    *out->last = cl;
    out->last = &cl->next;
    out->buf = b;

    return NGX_OK;
}


/* len bytes of room at out->buf->last; a new buffer when the last is full */

static u_char *
ngx_http_conductor_status_room(ngx_http_conductor_status_out_t *out,
    size_t len)
{
    ngx_chain_t  *cl;

    if (out->buf && (size_t) (out->buf->end - out->buf->last) >= len) {
        return out->buf->last;
    }

    cl = ngx_alloc_chain_link(out->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = ngx_create_temp_buf(out->pool, ngx_max(len, 16384));
    if (cl->buf == NULL) {
        return NULL;
    }

    cl->next = NULL;

    *out->last = cl;
    out->last = &cl->next;
    out->buf = cl->buf;

    return out->buf->last;
}


static ngx_int_t
ngx_http_conductor_status_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_uint_t format, ngx_chain_t *out)
{
    off_t             len;
    ngx_int_t         rc;
    ngx_chain_t      *cl;
    ngx_table_elt_t  *h;

    len = 0;

    for (cl = out; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);

        if (cl->next == NULL) {
            cl->buf->last_buf = (r == r->main);
            cl->buf->last_in_chain = 1;
        }
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = ngx_http_conductor_status_types[format];
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    /* live counters: a cached copy would be a wrong one */
    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    if (format == NGX_HTTP_CONDUCTOR_STATUS_HTML) {
        /* the page loads nothing but its own JSON */
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Content-Security-Policy");
        ngx_str_set(&h->value, "default-src 'none'; connect-src 'self'; "
                               "script-src 'unsafe-inline'; "
                               "style-src 'unsafe-inline'");
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}
