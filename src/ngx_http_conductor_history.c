
/*
 * History (conductor_history): the last requests, a ring of records, and
 * per-minute buckets of requests, tokens, cost and errors for the whole
 * gateway and per provider, key, model alias and client, in the zone.
 *
 * One table per configuration holds both.  A reload builds the new
 * configuration's table from the old one, each series matched by its zone
 * node (so by name, as the counters are), and frees the old one.  Every
 * access goes through the zone's pointer under the zone lock, which keeps
 * the swap safe for old workers still finishing their requests.
 *
 * A request is written once, in the LOG phase, inside the hold of the zone
 * lock that the ledger takes for its commit anyway: its record is made
 * before the hold (bounded copies into a stack record, no allocation), the
 * hold adds a copy of it and a few stores per series.  A series keeps the
 * minute of its newest bucket: the buckets of the minutes skipped since
 * are cleared when it is written next, so nothing runs on a timer.  The
 * status copies under the lock too, in chunks, and formats after.
 */


#include <jansson.h>

#include "ngx_http_conductor.h"


#define NGX_HTTP_CONDUCTOR_HISTORY_MAX_MINUTES  (24 * 60)
#define NGX_HTTP_CONDUCTOR_HISTORY_MAX_RECENT   10000

/* records or series one lock hold of the status copies */
#define NGX_HTTP_CONDUCTOR_HISTORY_CHUNK        64


typedef struct ngx_http_conductor_history_series_s
    ngx_http_conductor_history_series_t;

/* errors: answered >= 400; tokens: prompt + completion */
struct ngx_http_conductor_history_series_s {
    ngx_http_conductor_node_t        *node;      /* NULL: the total */
    uint64_t                          newest;    /* minute: epoch / 60 */
    ngx_http_conductor_minute_t       bucket[1];  /* by minute % minutes */
};


typedef struct ngx_http_conductor_history_s  ngx_http_conductor_history_t;

struct ngx_http_conductor_history_s {
    ngx_uint_t                        nrecent;   /* records in the ring */
    ngx_uint_t                        minutes;   /* buckets of a series */
    ngx_uint_t                        nseries;   /* the total first */
    size_t                            series_size;
    uint64_t                          next;      /* records written: the
                                                  * newest one's ticket */
    ngx_http_conductor_history_rec_t *ring;      /* by ticket % nrecent */
    u_char                           *series;
};


/* the series of the history by kind, as the status names their maps */
#define NGX_HTTP_CONDUCTOR_HISTORY_PROVIDERS  0
#define NGX_HTTP_CONDUCTOR_HISTORY_KEYS       1
#define NGX_HTTP_CONDUCTOR_HISTORY_MODELS     2
#define NGX_HTTP_CONDUCTOR_HISTORY_CLIENTS    3


/* a series of the configuration: its node, what it is called */
typedef struct {
    ngx_http_conductor_node_t        *node;      /* NULL: the total */
    ngx_uint_t                        kind;
    ngx_str_t                         name;
    ngx_str_t                        *provider;  /* a key's */
    json_t                           *object;    /* the status's map */
    ngx_uint_t                        optional;  /* only when it has some */
} ngx_http_conductor_history_item_t;


static ngx_uint_t ngx_http_conductor_history_nodes(
    ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_history_item_t *items);
static void ngx_http_conductor_history_item(
    ngx_http_conductor_history_item_t *items, ngx_uint_t n,
    ngx_http_conductor_node_t *node, ngx_uint_t kind, ngx_str_t *name,
    ngx_str_t *provider);
static void ngx_http_conductor_history_migrate(
    ngx_http_conductor_history_t *h, ngx_http_conductor_history_t *old);
static size_t ngx_http_conductor_history_copy(u_char *dst, ngx_str_t *src);
static ngx_inline void ngx_http_conductor_history_count(
    ngx_http_conductor_history_t *h, ngx_http_conductor_node_t *node,
    uint64_t minute, int error, uint64_t tokens, uint64_t cost);
static json_t *ngx_http_conductor_history_recent(
    ngx_http_conductor_main_conf_t *cmcf, ngx_pool_t *pool, ngx_uint_t n);
static json_t *ngx_http_conductor_history_record_json(ngx_pool_t *pool,
    ngx_http_conductor_history_rec_t *rec);
static json_t *ngx_http_conductor_history_name(ngx_pool_t *pool,
    ngx_http_conductor_node_t *node, ngx_uint_t key);
static json_t *ngx_http_conductor_history_series(
    ngx_http_conductor_main_conf_t *cmcf, ngx_pool_t *pool,
    ngx_uint_t minutes, time_t now);
static ngx_http_conductor_history_item_t *
    ngx_http_conductor_history_items(ngx_http_conductor_main_conf_t *cmcf,
    ngx_pool_t *pool, json_t *history, ngx_uint_t *n);
static json_t *ngx_http_conductor_history_arrays(
    ngx_http_conductor_minute_t *b, ngx_uint_t n);


static const char  *ngx_http_conductor_history_endpoints[] = {
    "chat", "completions", "embeddings", "responses", "messages"
};


static const char  *ngx_http_conductor_history_kinds[] = {
    "providers", "keys", "models", "clients"
};


#define ngx_http_conductor_history_at(h, i)                                  \
    ((ngx_http_conductor_history_series_t *)                                 \
         ((h)->series + (i) * (h)->series_size))


/* conductor_history [window=TIME] [recent=N] | off */

char *
ngx_http_conductor_history_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    ngx_str_t   *value;
    ngx_msec_t   window;
    ngx_uint_t   recent;

    ngx_http_conductor_param_t  params[] = {
        { "window", NGX_HTTP_CONDUCTOR_PARAM_MSEC, &window },
        { "recent", NGX_HTTP_CONDUCTOR_PARAM_NUM, &recent },
        { NULL, 0, NULL }
    };

    if (cmcf->history_minutes != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        cmcf->history_minutes = 0;
        cmcf->history_recent = 0;
        return NGX_CONF_OK;
    }

    window = NGX_HTTP_CONDUCTOR_HISTORY_MINUTES * 60000;
    recent = NGX_HTTP_CONDUCTOR_HISTORY_RECENT;

    if (ngx_http_conductor_params(cf, 1, params) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* whole minutes: a bucket is one */
    cmcf->history_minutes = (window + 59999) / 60000;
    cmcf->history_recent = recent;

    if (cmcf->history_minutes > NGX_HTTP_CONDUCTOR_HISTORY_MAX_MINUTES) {
        return "has a window of more than 24h";
    }

    if (recent > NGX_HTTP_CONDUCTOR_HISTORY_MAX_RECENT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "recent=%ui: at most %d records are kept",
                           recent, NGX_HTTP_CONDUCTOR_HISTORY_MAX_RECENT);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The zone has the configuration's nodes: the table for them replaces the
 * one of the last configuration, whose records and buckets it takes over.
 * Runs in the master, with old workers possibly still writing: under the
 * lock.  No room for it is not fatal: the history is what is given up.
 */

void
ngx_http_conductor_history_init_zone(ngx_http_conductor_main_conf_t *cmcf,
    ngx_log_t *log)
{
    size_t                                size;
    ngx_uint_t                            i, n;
    ngx_http_conductor_shctx_t           *sh;
    ngx_http_conductor_history_item_t    *items;
    ngx_http_conductor_history_t         *h, *old;
    ngx_http_conductor_history_series_t  *s;

    sh = cmcf->sh;
    h = NULL;
    items = NULL;
    n = 0;
    size = 0;

    if (cmcf->history_minutes) {
        n = ngx_http_conductor_history_nodes(cmcf, NULL);

        items = ngx_alloc(n * sizeof(ngx_http_conductor_history_item_t), log);
        if (items == NULL) {
            return;
        }

        (void) ngx_http_conductor_history_nodes(cmcf, items);

        size = sizeof(ngx_http_conductor_history_t)
               + cmcf->history_recent
                 * sizeof(ngx_http_conductor_history_rec_t)
               + (n + 1) * (offsetof(ngx_http_conductor_history_series_t,
                                     bucket)
                            + cmcf->history_minutes
                              * sizeof(ngx_http_conductor_minute_t));
    }

    ngx_http_conductor_shm_lock(cmcf);

    old = sh->history;

    if (cmcf->history_minutes) {
        h = ngx_slab_calloc_locked(cmcf->shpool, size);

        if (h == NULL) {
            ngx_http_conductor_shm_unlock(cmcf);

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "conductor zone \"%V\" has no room for the history "
                          "(%uz bytes: %ui series of %ui minutes, %ui "
                          "records): %s; raise the size of conductor_zone "
                          "or lower conductor_history's",
                          &cmcf->shm_zone->shm.name, size, n + 1,
                          cmcf->history_minutes, cmcf->history_recent,
                          old ? "it keeps the table of the last configuration"
                              : "requests are not recorded");
            ngx_free(items);
            return;
        }

        h->nrecent = cmcf->history_recent;
        h->minutes = cmcf->history_minutes;
        h->nseries = n + 1;
        h->series_size = offsetof(ngx_http_conductor_history_series_t, bucket)
                         + h->minutes * sizeof(ngx_http_conductor_minute_t);
        h->ring = (ngx_http_conductor_history_rec_t *) (h + 1);
        h->series = (u_char *) (h->ring + h->nrecent);

        for (i = 0; i < n; i++) {
            ngx_http_conductor_history_at(h, i + 1)->node = items[i].node;
        }

        if (old) {
            ngx_http_conductor_history_migrate(h, old);
        }
    }

    if (old) {
        /* the nodes of the last configuration let go of its series */
        for (i = 1; i < old->nseries; i++) {
            ngx_http_conductor_history_at(old, i)->node->history = NULL;
        }

        ngx_slab_free_locked(cmcf->shpool, old);
    }

    if (h) {
        for (i = 1; i < h->nseries; i++) {
            s = ngx_http_conductor_history_at(h, i);
            s->node->history = s;
        }
    }

    sh->history = h;

    ngx_http_conductor_shm_unlock(cmcf);

    if (items) {
        ngx_free(items);
    }
}


/*
 * The series of the configuration (NULL: counted only), each node once:
 * providers and their keys, models (the unknown names' pseudo-models,
 * shown only once used), clients.
 */

static ngx_uint_t
ngx_http_conductor_history_nodes(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_history_item_t *items)
{
    ngx_uint_t                          i, j, n;
    ngx_http_conductor_key_t           *key;
    ngx_http_conductor_model_t        **m;
    ngx_http_conductor_client_t       **cl;
    ngx_http_conductor_provider_t     **p;

    static ngx_str_t  unknown[] = {
        ngx_string("(unknown openai)"),
        ngx_string("(unknown anthropic)")
    };

    n = 0;
    p = cmcf->providers.elts;

    for (i = 0; i < cmcf->providers.nelts; i++) {
        ngx_http_conductor_history_item(items, n++, p[i]->node,
                                        NGX_HTTP_CONDUCTOR_HISTORY_PROVIDERS,
                                        &p[i]->name, NULL);
        key = p[i]->keys.elts;

        for (j = 0; j < p[i]->keys.nelts; j++) {
            ngx_http_conductor_history_item(items, n++, key[j].node,
                                            NGX_HTTP_CONDUCTOR_HISTORY_KEYS,
                                            &key[j].name, &p[i]->name);
        }
    }

    m = cmcf->models.elts;

    for (i = 0; i < cmcf->models.nelts; i++) {
        ngx_http_conductor_history_item(items, n++, m[i]->node,
                                        NGX_HTTP_CONDUCTOR_HISTORY_MODELS,
                                        &m[i]->name, NULL);
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NDIALECTS; i++) {
        ngx_http_conductor_history_item(items, n, cmcf->passthrough[i].node,
                                        NGX_HTTP_CONDUCTOR_HISTORY_MODELS,
                                        &unknown[i], NULL);
        if (items) {
            items[n].optional = 1;
        }

        n++;
    }

    cl = cmcf->clients.elts;

    for (i = 0; i < cmcf->clients.nelts; i++) {
        ngx_http_conductor_history_item(items, n++, cl[i]->node,
                                        NGX_HTTP_CONDUCTOR_HISTORY_CLIENTS,
                                        &cl[i]->name, NULL);
    }

    return n;
}


static void
ngx_http_conductor_history_item(ngx_http_conductor_history_item_t *items,
    ngx_uint_t n, ngx_http_conductor_node_t *node, ngx_uint_t kind,
    ngx_str_t *name, ngx_str_t *provider)
{
    if (items == NULL) {
        return;
    }

    ngx_memzero(&items[n], sizeof(ngx_http_conductor_history_item_t));

    items[n].node = node;
    items[n].kind = kind;
    items[n].name = *name;
    items[n].provider = provider;
}


/*
 * The new table takes the newest records the old one has room for (their
 * tickets too), and each series the buckets of the minutes both tables
 * hold.  Its nodes still point at their old series.
 */

static void
ngx_http_conductor_history_migrate(ngx_http_conductor_history_t *h,
    ngx_http_conductor_history_t *old)
{
    uint64_t                              t, first;
    ngx_uint_t                            i;
    ngx_http_conductor_history_series_t  *s, *o;

    first = old->next > old->nrecent ? old->next - old->nrecent + 1 : 1;

    if (old->next >= h->nrecent && old->next - h->nrecent + 1 > first) {
        first = old->next - h->nrecent + 1;
    }

    for (t = first; t <= old->next; t++) {
        h->ring[t % h->nrecent] = old->ring[t % old->nrecent];
    }

    h->next = old->next;

    for (i = 0; i < h->nseries; i++) {
        s = ngx_http_conductor_history_at(h, i);

        o = (i == 0) ? ngx_http_conductor_history_at(old, 0)
                     : s->node->history;

        if (o) {
            ngx_http_conductor_minutes_move(s->bucket, h->minutes, &s->newest,
                                            o->bucket, old->minutes,
                                            o->newest);
        }
    }
}


/*
 * The record of a request, before the lock is taken: names as zone nodes,
 * the alias and the upstream model as bounded copies.  NULL: no history.
 */

ngx_http_conductor_history_rec_t *
ngx_http_conductor_history_record(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_history_rec_t *rec)
{
    ngx_str_t                        *upstream;
    ngx_time_t                       *tp;
    ngx_msec_int_t                    ms;
    ngx_http_conductor_cand_t        *cand;
    ngx_http_conductor_usage_t       *u;
    ngx_http_conductor_main_conf_t   *cmcf;
    ngx_http_conductor_provider_t    *provider;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    if (cmcf->history_minutes == 0 || cmcf->sh == NULL) {
        return NULL;
    }

    /* the last attempt's, as $conductor_provider says */
    cand = ctx->winner ? ctx->winner : ctx->cand;
    provider = cand ? cand->provider : ctx->account.usage_provider;
    u = &ctx->account.final;

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));

    rec->time = (uint64_t) r->start_sec * 1000 + r->start_msec;
    rec->duration = (uint32_t) ngx_max(ms, 0);
    rec->client = ctx->client ? ctx->client->node : NULL;
    rec->model = ctx->model ? ctx->model->node : NULL;
    rec->provider = provider ? provider->node : NULL;
    rec->key = cand ? cand->key->node : NULL;

    /* what nginx logs as $status */
    rec->status = (uint16_t) (r->err_status ? r->err_status
                                            : r->headers_out.status);
    rec->attempts = (uint8_t) ngx_min(ctx->attempts, 255);
    rec->endpoint = (uint8_t) ctx->endpoint;
    rec->flags = ctx->stream ? NGX_HTTP_CONDUCTOR_HISTORY_STREAM : 0;

    /* a provider answered: the time to its header */
    rec->ttfb = (ctx->winner || ctx->account.usage_provider)
                ? (uint32_t) ctx->ttfb : NGX_HTTP_CONDUCTOR_HISTORY_NONE;

    /*
     * the start is the wall clock's, the first byte the event loop's: they
     * can disagree by a millisecond when the answer ends in the loop turn
     * its head came in (a short answer settled at its last buffer)
     */
    if (rec->ttfb != NGX_HTTP_CONDUCTOR_HISTORY_NONE
        && rec->duration < rec->ttfb)
    {
        rec->duration = rec->ttfb;
    }

    if (u->found) {
        rec->flags |= NGX_HTTP_CONDUCTOR_HISTORY_USAGE;
        rec->prompt = (uint64_t) u->prompt;
        rec->completion = (uint64_t) u->completion;
        rec->cached = (uint64_t) u->cached;

        if (ctx->account.estimated) {
            rec->flags |= NGX_HTTP_CONDUCTOR_HISTORY_ESTIMATED;
        }

    } else {
        rec->prompt = 0;
        rec->completion = 0;
        rec->cached = 0;
    }

    rec->cost = 0;

    if (ctx->account.priced) {
        rec->flags |= NGX_HTTP_CONDUCTOR_HISTORY_PRICED;

        /* pico-USD: beyond 18 million USD a request, it saturates */
        rec->cost = (ctx->account.cost.usd
                     < UINT64_MAX / NGX_HTTP_CONDUCTOR_MONEY_PICO)
                    ? ctx->account.cost.usd * NGX_HTTP_CONDUCTOR_MONEY_PICO
                      + ctx->account.cost.pico
                    : UINT64_MAX;

    } else if (!u->found && ngx_http_conductor_price_of(ctx, cand)) {
        /* an error of a priced model used nothing: it cost 0, not null */
        rec->flags |= NGX_HTTP_CONDUCTOR_HISTORY_PRICED;
    }

    /* a configured alias is its node's name; the client's own (of no
     * alias, or of a pseudo-model that passes it on), a copy */
    rec->alias_len = 0;

    if (ctx->model == NULL || ctx->model->targets.nelts == 0) {
        rec->flags |= NGX_HTTP_CONDUCTOR_HISTORY_ALIAS;
        rec->alias_len = (uint8_t) ngx_http_conductor_history_copy(rec->text,
                                                               &ctx->alias);
    }

    upstream = NULL;

    if (cand) {
        upstream = cand->model.len ? &cand->model : &ctx->alias;

    } else if (ctx->account.usage_provider) {
        upstream = &ctx->alias;
    }

    rec->upstream_len = upstream
                        ? (uint8_t) ngx_http_conductor_history_copy(
                                        rec->text + rec->alias_len, upstream)
                        : 0;

    return rec;
}


/* at most HISTORY_NAME bytes, cut where a UTF-8 character starts */

static size_t
ngx_http_conductor_history_copy(u_char *dst, ngx_str_t *src)
{
    size_t  len;

    len = src->len;

    if (len > NGX_HTTP_CONDUCTOR_HISTORY_NAME) {
        len = NGX_HTTP_CONDUCTOR_HISTORY_NAME;

        while (len && (src->data[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    ngx_memcpy(dst, src->data, len);

    return len;
}


/*
 * The record goes into the ring and its numbers into the minute of each of
 * its series: the total, its provider, key, model and client.  Called with
 * the zone lock.
 */

void
ngx_http_conductor_history_add(ngx_http_conductor_shctx_t *sh,
    ngx_http_conductor_history_rec_t *rec, time_t now)
{
    int                                   error;
    uint64_t                              minute, tokens;
    ngx_http_conductor_history_t         *h;
    ngx_http_conductor_history_series_t  *s;

    h = sh->history;

    if (h == NULL) {
        return;
    }

    rec->ticket = ++h->next;
    ngx_memcpy(&h->ring[rec->ticket % h->nrecent], rec,
               offsetof(ngx_http_conductor_history_rec_t, text)
               + rec->alias_len + rec->upstream_len);

    minute = (uint64_t) now / 60;
    tokens = rec->prompt + rec->completion;
    error = (rec->status >= NGX_HTTP_BAD_REQUEST);

    s = ngx_http_conductor_history_at(h, 0);
    ngx_http_conductor_minutes_add(s->bucket, h->minutes, &s->newest, minute,
                                   error, tokens, rec->cost);

    ngx_http_conductor_history_count(h, rec->provider, minute, error, tokens,
                                     rec->cost);
    ngx_http_conductor_history_count(h, rec->key, minute, error, tokens,
                                     rec->cost);
    ngx_http_conductor_history_count(h, rec->model, minute, error, tokens,
                                     rec->cost);
    ngx_http_conductor_history_count(h, rec->client, minute, error, tokens,
                                     rec->cost);
}


/* a node's series is in the table, or it has none */

static ngx_inline void
ngx_http_conductor_history_count(ngx_http_conductor_history_t *h,
    ngx_http_conductor_node_t *node, uint64_t minute, int error,
    uint64_t tokens, uint64_t cost)
{
    ngx_http_conductor_history_series_t  *s;

    if (node && node->history) {
        s = node->history;
        ngx_http_conductor_minutes_add(s->bucket, h->minutes, &s->newest,
                                       minute, error, tokens, cost);
    }
}


/*
 * ?recent=N and ?history=DURATION of the status: N records, newest first
 * (-1: not asked), the minutes of the history (0: not asked).  NGX_ERROR
 * with a message for a value that is not one.
 */

ngx_int_t
ngx_http_conductor_history_args(ngx_http_request_t *r, ngx_int_t *recent,
    ngx_uint_t *minutes, const char **error)
{
    time_t     t;
    ngx_int_t  n;
    ngx_str_t  v;

    *recent = -1;
    *minutes = 0;

    if (ngx_http_arg(r, (u_char *) "recent", sizeof("recent") - 1, &v)
        == NGX_OK)
    {
        n = ngx_atoi(v.data, v.len);

        if (n == NGX_ERROR) {
            *error = "recent= takes a number of requests, e.g. recent=50";
            return NGX_ERROR;
        }

        *recent = n;
    }

    if (ngx_http_arg(r, (u_char *) "history", sizeof("history") - 1, &v)
        == NGX_OK)
    {
        t = ngx_parse_time(&v, 1);

        if (t == (time_t) NGX_ERROR || t <= 0) {
            *error = "history= takes a duration, e.g. history=15m, "
                     "history=1h or history=3h";
            return NGX_ERROR;
        }

        *minutes = (t + 59) / 60;
    }

    return NGX_OK;
}


/* adds "recent" and "history" to the status's JSON, as they were asked */

ngx_int_t
ngx_http_conductor_history_json(ngx_http_conductor_main_conf_t *cmcf,
    ngx_pool_t *pool, json_t *root, ngx_int_t recent, ngx_uint_t minutes,
    time_t now)
{
    json_t  *v;

    if (recent >= 0) {
        v = ngx_http_conductor_history_recent(cmcf, pool, recent);

        if (json_object_set_new(root, "recent", v) != 0) {
            return NGX_ERROR;
        }
    }

    if (minutes) {
        /* off, or no zone: null */
        v = (cmcf->history_minutes && cmcf->sh)
            ? ngx_http_conductor_history_series(cmcf, pool, minutes, now)
            : json_null();

        if (json_object_set_new(root, "history", v) != 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The newest records, copied a chunk a lock hold.  Tickets tell what a
 * slot holds: a ticket the ring no longer has (newer requests overwrote it
 * meanwhile) ends the list; a slot without the ticket it should have (a
 * worker killed while it wrote) is left out.
 */

static json_t *
ngx_http_conductor_history_recent(ngx_http_conductor_main_conf_t *cmcf,
    ngx_pool_t *pool, ngx_uint_t n)
{
    json_t                            *list;
    uint64_t                           newest, t;
    ngx_uint_t                         got, seen, i, k;
    ngx_http_conductor_history_t      *h;
    ngx_http_conductor_history_rec_t  *recs, *rec;

    list = json_array();

    n = ngx_min(n, cmcf->history_recent);

    if (list == NULL || n == 0 || cmcf->sh == NULL) {
        return list;
    }

    recs = ngx_palloc(pool, n * sizeof(ngx_http_conductor_history_rec_t));
    if (recs == NULL) {
        json_decref(list);
        return NULL;
    }

    got = 0;
    seen = 0;
    newest = 0;

    for ( ;; ) {
        ngx_http_conductor_shm_lock(cmcf);

        h = cmcf->sh->history;

        if (h && seen == 0) {
            newest = h->next;
        }

        for (k = 0; h && k < NGX_HTTP_CONDUCTOR_HISTORY_CHUNK && got < n;
             k++)
        {
            t = newest - seen;

            if (t == 0 || h->next - t >= h->nrecent) {
                break;
            }

            seen++;
            rec = &h->ring[t % h->nrecent];

            if (rec->ticket == t) {
                recs[got++] = *rec;
            }
        }

        ngx_http_conductor_shm_unlock(cmcf);

        if (h == NULL || k < NGX_HTTP_CONDUCTOR_HISTORY_CHUNK || got == n) {
            break;
        }
    }

    for (i = 0; i < got; i++) {
        if (json_array_append_new(list,
                ngx_http_conductor_history_record_json(pool, &recs[i]))
            != 0)
        {
            json_decref(list);
            return NULL;
        }
    }

    return list;
}


static json_t *
ngx_http_conductor_history_record_json(ngx_pool_t *pool,
    ngx_http_conductor_history_rec_t *rec)
{
    json_t     *model, *upstream, *source;
    ngx_str_t   s;

    if (rec->flags & NGX_HTTP_CONDUCTOR_HISTORY_ALIAS) {
        s.data = rec->text;
        s.len = rec->alias_len;
        model = s.len ? ngx_http_conductor_json_str(pool, &s) : json_null();

    } else {
        model = ngx_http_conductor_history_name(pool, rec->model, 0);
    }

    s.data = rec->text + rec->alias_len;
    s.len = rec->upstream_len;
    upstream = s.len ? ngx_http_conductor_json_str(pool, &s) : json_null();

    source = (rec->flags & NGX_HTTP_CONDUCTOR_HISTORY_USAGE)
             ? json_string((rec->flags & NGX_HTTP_CONDUCTOR_HISTORY_ESTIMATED)
                           ? "estimated" : "response")
             : json_null();

    /* "o" hands each value over to the object, on failure too */
    return json_pack("{s:f, s:o, s:o, s:o, s:o, s:o, s:s?, s:b, s:i, s:i,"
                     " s:{s:I, s:I, s:I, s:I}, s:o, s:o, s:o, s:I}",
                     "time", (double) rec->time / 1000,
                     "client",
                     ngx_http_conductor_history_name(pool, rec->client, 0),
                     "model", model,
                     "provider",
                     ngx_http_conductor_history_name(pool, rec->provider, 0),
                     "key", ngx_http_conductor_history_name(pool, rec->key, 1),
                     "upstream_model", upstream,
                     "endpoint",
                     rec->endpoint < NGX_HTTP_CONDUCTOR_NEPS
                     ? ngx_http_conductor_history_endpoints[rec->endpoint]
                     : NULL,
                     "stream",
                     (int) (rec->flags & NGX_HTTP_CONDUCTOR_HISTORY_STREAM),
                     "status", (int) rec->status,
                     "attempts", (int) rec->attempts,
                     "tokens",
                         "prompt", (json_int_t) rec->prompt,
                         "completion", (json_int_t) rec->completion,
                         "cached", (json_int_t) rec->cached,
                         "total", (json_int_t) (rec->prompt + rec->completion),
                     "usage_source", source,
                     "cost_usd",
                     (rec->flags & NGX_HTTP_CONDUCTOR_HISTORY_PRICED)
                     ? json_real((double) rec->cost
                                 / NGX_HTTP_CONDUCTOR_MONEY_PICO)
                     : json_null(),
                     "ttfb_ms",
                     rec->ttfb == NGX_HTTP_CONDUCTOR_HISTORY_NONE
                     ? json_null() : json_integer(rec->ttfb),
                     "duration_ms", (json_int_t) rec->duration);
}


/*
 * A node's name without the zone's prefix ("provider:", "client:",
 * "model:"); a key's ("key:PROVIDER/KEY") without its provider's too.
 */

static json_t *
ngx_http_conductor_history_name(ngx_pool_t *pool,
    ngx_http_conductor_node_t *node, ngx_uint_t key)
{
    u_char     *p, *last;
    ngx_str_t   s;

    if (node == NULL) {
        return json_null();
    }

    last = node->name + node->len;

    p = ngx_strlchr(node->name, last, key ? '/' : ':');
    p = p ? p + 1 : node->name;

    s.data = p;
    s.len = last - p;

    return ngx_http_conductor_json_str(pool, &s);
}


/*
 * "history": the arrays of each series over the last minutes (at most the
 * window), the current minute last; copied a chunk of series a lock hold.
 */

static json_t *
ngx_http_conductor_history_series(ngx_http_conductor_main_conf_t *cmcf,
    ngx_pool_t *pool, ngx_uint_t minutes, time_t now)
{
    json_t                               *history, *arrays;
    uint64_t                              end;
    ngx_uint_t                            i, j, k, n;
    ngx_http_conductor_minute_t          *b, *all;
    ngx_http_conductor_history_t         *h;
    ngx_http_conductor_history_item_t    *items;
    ngx_http_conductor_history_series_t  *s;

    minutes = ngx_min(minutes, cmcf->history_minutes);
    end = (uint64_t) now / 60;

    /* "total" is set in its place below */
    history = json_pack("{s:i, s:I, s:i, s:n, s:{}, s:{}, s:{}, s:{}}",
                        "bucket_seconds", 60,
                        "end", (json_int_t) (end * 60),
                        "minutes", (int) minutes,
                        "total",
                        "providers", "keys", "models", "clients");
    if (history == NULL) {
        return NULL;
    }

    items = ngx_http_conductor_history_items(cmcf, pool, history, &n);
    if (items == NULL) {
        goto failed;
    }

    all = ngx_pcalloc(pool, n * minutes * sizeof(ngx_http_conductor_minute_t));
    if (all == NULL) {
        goto failed;
    }

    for (i = 0; i < n; /* void */ ) {
        ngx_http_conductor_shm_lock(cmcf);

        h = cmcf->sh->history;

        for (k = 0; k < NGX_HTTP_CONDUCTOR_HISTORY_CHUNK && i < n; k++, i++)
        {
            if (h == NULL) {
                continue;
            }

            s = items[i].node ? items[i].node->history
                              : ngx_http_conductor_history_at(h, 0);

            if (s == NULL) {
                continue;
            }

            ngx_http_conductor_minutes_read(s->bucket, h->minutes, s->newest,
                                            end, minutes, all + i * minutes);
        }

        ngx_http_conductor_shm_unlock(cmcf);
    }

    for (i = 0; i < n; i++) {
        b = all + i * minutes;

        if (items[i].optional) {
            for (j = 0; j < minutes && b[j].requests == 0; j++) {
                /* void */
            }

            if (j == minutes) {
                continue;
            }
        }

        arrays = ngx_http_conductor_history_arrays(b, minutes);

        if (arrays == NULL
            || json_object_setn_new(items[i].object,
                                    (const char *) items[i].name.data,
                                    items[i].name.len, arrays)
               != 0)
        {
            goto failed;
        }
    }

    return history;

failed:

    json_decref(history);

    return NULL;
}


/*
 * What the history shows: the total, then the configuration's providers,
 * keys ("PROVIDER/KEY"), models (the unknown names' only when they have
 * requests in it) and clients, each with the object it goes to and its
 * name as a JSON key.
 */

static ngx_http_conductor_history_item_t *
ngx_http_conductor_history_items(ngx_http_conductor_main_conf_t *cmcf,
    ngx_pool_t *pool, json_t *history, ngx_uint_t *n)
{
    u_char                              *p;
    json_t                              *name;
    ngx_str_t                            s;
    ngx_uint_t                           i, k;
    ngx_http_conductor_history_item_t   *items, *it;

    k = ngx_http_conductor_history_nodes(cmcf, NULL) + 1;

    items = ngx_pcalloc(pool, k * sizeof(ngx_http_conductor_history_item_t));
    if (items == NULL) {
        return NULL;
    }

    items[0].object = history;
    ngx_str_set(&items[0].name, "total");

    (void) ngx_http_conductor_history_nodes(cmcf, items + 1);

    for (i = 1; i < k; i++) {
        it = &items[i];

        it->object = json_object_get(history,
                         ngx_http_conductor_history_kinds[it->kind]);

        if (it->provider) {
            /* a key is PROVIDER/KEY */
            p = ngx_pnalloc(pool, it->provider->len + 1 + it->name.len);
            if (p == NULL) {
                return NULL;
            }

            s.data = p;
            p = ngx_cpymem(p, it->provider->data, it->provider->len);
            *p++ = '/';
            p = ngx_cpymem(p, it->name.data, it->name.len);
            s.len = p - s.data;

            it->name = s;
        }

        /* names as jansson takes them: UTF-8 (a name that is not, '?') */
        name = ngx_http_conductor_json_str(pool, &it->name);
        if (name == NULL) {
            return NULL;
        }

        s.len = json_string_length(name);
        s.data = ngx_pnalloc(pool, s.len);

        if (s.data == NULL) {
            json_decref(name);
            return NULL;
        }

        ngx_memcpy(s.data, json_string_value(name), s.len);
        json_decref(name);

        it->name = s;
    }

    *n = k;

    return items;
}


/* {"requests":[..],"tokens":[..],"cost_usd":[..],"errors":[..]} */

static json_t *
ngx_http_conductor_history_arrays(ngx_http_conductor_minute_t *b,
    ngx_uint_t n)
{
    json_t      *obj, *req, *tok, *cost, *err;
    ngx_uint_t   i;

    req = json_array();
    tok = json_array();
    cost = json_array();
    err = json_array();

    obj = json_pack("{s:o, s:o, s:o, s:o}", "requests", req, "tokens", tok,
                    "cost_usd", cost, "errors", err);
    if (obj == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        if (json_array_append_new(req, json_integer(b[i].requests)) != 0
            || json_array_append_new(tok, json_integer(b[i].tokens)) != 0
            || json_array_append_new(cost,
                   json_real((double) b[i].cost
                             / NGX_HTTP_CONDUCTOR_MONEY_PICO))
               != 0
            || json_array_append_new(err, json_integer(b[i].errors)) != 0)
        {
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}
