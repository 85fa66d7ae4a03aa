
/*
 * The gateway's clients (conductor_client): their keys, models, limits and
 * budgets, and the ACCESS phase handler of conductor_auth that tells who
 * sends a request.  A key is kept as its SHA-256 digest only: found by it
 * in a sorted table, compared in constant time; the secret itself is
 * wiped from memory once hashed, and never reaches the zone, a status
 * output, a variable or a log.  Limits and budgets are the ledger's
 * (reserved and reconciled under the zone lock like a provider key's).
 */


#include "ngx_http_conductor.h"


static char *ngx_http_conductor_client_line(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_conductor_client_key(ngx_conf_t *cf,
    ngx_http_conductor_main_conf_t *cmcf, ngx_http_conductor_client_t *cl);
static char *ngx_http_conductor_client_limit(ngx_conf_t *cf,
    ngx_http_conductor_client_t *cl);
static char *ngx_http_conductor_client_budget(ngx_conf_t *cf,
    ngx_http_conductor_client_t *cl);
static int ngx_libc_cdecl ngx_http_conductor_client_key_cmp(const void *a,
    const void *b);
static ngx_int_t ngx_http_conductor_credential(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_http_conductor_client_t *ngx_http_conductor_client_find(
    ngx_http_conductor_main_conf_t *cmcf, ngx_str_t *key);


static ngx_str_t  ngx_http_conductor_period_names[] = {
    ngx_string("day"),
    ngx_string("month"),
    ngx_string("total"),
    ngx_null_string
};


char *
ngx_http_conductor_client_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    char                          *rv;
    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_conf_t                     save;
    ngx_http_conductor_client_t   *cl, **clp;

    value = cf->args->elts;

    if (ngx_http_conductor_valid_name(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid client name \"%V\": letters, digits, "
                           "\".\", \"_\" and \"-\" only", &value[1]);
        return NGX_CONF_ERROR;
    }

    clp = cmcf->clients.elts;

    for (i = 0; i < cmcf->clients.nelts; i++) {
        if (clp[i]->name.len == value[1].len
            && ngx_strncmp(clp[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate conductor_client \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    cl = ngx_pcalloc(cf->pool, sizeof(ngx_http_conductor_client_t));
    if (cl == NULL) {
        return NGX_CONF_ERROR;
    }

    cl->name = value[1];
    cl->file = cf->conf_file->file.name.data;
    cl->line = cf->conf_file->line;

    clp = ngx_array_push(&cmcf->clients);
    if (clp == NULL) {
        return NGX_CONF_ERROR;
    }

    *clp = cl;

    save = *cf;
    cf->handler = ngx_http_conductor_client_line;
    cf->handler_conf = (char *) cl;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (cl->nkeys == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "conductor_client \"%V\" has no key", &cl->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_conductor_client_line(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_http_conductor_client_t *cl = (ngx_http_conductor_client_t *) conf;

    ngx_str_t                       *value, *name;
    ngx_uint_t                       i;
    ngx_http_conductor_main_conf_t  *cmcf;

    value = cf->args->elts;
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_conductor_module);

    if (value[0].len == 3 && ngx_strncmp(value[0].data, "key", 3) == 0) {
        return ngx_http_conductor_client_key(cf, cmcf, cl);
    }

    if (value[0].len == 5 && ngx_strncmp(value[0].data, "limit", 5) == 0) {
        return ngx_http_conductor_client_limit(cf, cl);
    }

    if (value[0].len == 6 && ngx_strncmp(value[0].data, "budget", 6) == 0) {
        return ngx_http_conductor_client_budget(cf, cl);
    }

    if (value[0].len == 6 && ngx_strncmp(value[0].data, "models", 6) == 0) {

        if (cf->args->nelts < 2) {
            goto invalid_args;
        }

        if (cl->model_names == NULL) {
            cl->model_names = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                               sizeof(ngx_str_t));
            if (cl->model_names == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        for (i = 1; i < cf->args->nelts; i++) {
            name = ngx_array_push(cl->model_names);
            if (name == NULL) {
                return NGX_CONF_ERROR;
            }

            *name = value[i];
        }

        return NGX_CONF_OK;
    }

    if (value[0].len == 8 && ngx_strncmp(value[0].data, "unpriced", 8) == 0) {

        if (cf->args->nelts != 2) {
            goto invalid_args;
        }

        if (value[1].len == 6 && ngx_strncmp(value[1].data, "refuse", 6) == 0)
        {
            cl->unpriced_tokens = 0;
            return NGX_CONF_OK;
        }

        if (value[1].len == 6 && ngx_strncmp(value[1].data, "tokens", 6) == 0)
        {
            cl->unpriced_tokens = 1;
            return NGX_CONF_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid unpriced \"%V\": refuse or tokens",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[0].len == 5 && ngx_strncmp(value[0].data, "admin", 5) == 0) {

        if (cf->args->nelts != 2) {
            goto invalid_args;
        }

        if (ngx_strcmp(value[1].data, "on") == 0) {
            cl->admin = 1;
            return NGX_CONF_OK;
        }

        if (ngx_strcmp(value[1].data, "off") == 0) {
            cl->admin = 0;
            return NGX_CONF_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid admin \"%V\": on or off", &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in conductor_client: "
                       "expected key, models, limit, budget, unpriced or "
                       "admin", &value[0]);
    return NGX_CONF_ERROR;

invalid_args:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid number of arguments in \"%V\"", &value[0]);
    return NGX_CONF_ERROR;
}


/*
 * key SECRET | env=NAME | file=PATH | sha256=HEX: only the digest is
 * kept; the secret read is wiped at once.
 */

static char *
ngx_http_conductor_client_key(ngx_conf_t *cf,
    ngx_http_conductor_main_conf_t *cmcf, ngx_http_conductor_client_t *cl)
{
    ngx_int_t                         hi, lo;
    ngx_str_t                        *value, secret;
    ngx_uint_t                        i;
    ngx_http_conductor_client_t     **clp;
    ngx_http_conductor_client_key_t  *ck, *k;

    value = cf->args->elts;

    if (cf->args->nelts != 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key needs one secret: key SECRET|env=VAR|"
                           "file=PATH|sha256=HEX");
        return NGX_CONF_ERROR;
    }

    ck = ngx_array_push(&cmcf->client_keys);
    if (ck == NULL) {
        return NGX_CONF_ERROR;
    }

    ck->client = cl;

    if (value[1].len > 7 && ngx_strncmp(value[1].data, "sha256=", 7) == 0) {

        if (value[1].len != 7 + 2 * NGX_HTTP_CONDUCTOR_SHA256_LEN) {
            goto invalid_digest;
        }

        for (i = 0; i < NGX_HTTP_CONDUCTOR_SHA256_LEN; i++) {
            hi = ngx_hextoi(value[1].data + 7 + 2 * i, 1);
            lo = ngx_hextoi(value[1].data + 8 + 2 * i, 1);

            if (hi == NGX_ERROR || lo == NGX_ERROR) {
                goto invalid_digest;
            }

            ck->digest[i] = (u_char) (hi << 4 | lo);
        }

    } else {
        if (ngx_http_conductor_read_secret(cf, &value[1], &cl->name, &secret)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        ngx_http_conductor_sha256(secret.data, secret.len, ck->digest);

        /* the secret is not needed any more: not even in a core dump */
        ngx_explicit_memzero(secret.data, secret.len);
    }

    /* one key, one client: else who sent the request is not known */
    k = cmcf->client_keys.elts;

    for (i = 0; i + 1 < cmcf->client_keys.nelts; i++) {
        if (ngx_memcmp(k[i].digest, ck->digest, NGX_HTTP_CONDUCTOR_SHA256_LEN)
            == 0)
        {
            clp = &k[i].client;
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the same key is given to conductor_client "
                               "\"%V\" and \"%V\"", &(*clp)->name, &cl->name);
            return NGX_CONF_ERROR;
        }
    }

    cl->nkeys++;

    return NGX_CONF_OK;

invalid_digest:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid key \"sha256=...\" of client \"%V\": 64 hex "
                       "digits expected (sha256sum of the key)", &cl->name);
    return NGX_CONF_ERROR;
}


/* limit rpm= tpm= rph= tph= rpd= tpd= max_inflight= */

static char *
ngx_http_conductor_client_limit(ngx_conf_t *cf,
    ngx_http_conductor_client_t *cl)
{
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_conductor_parse_limit(&value[i], cl->limit,
                                           &cl->max_inflight)
            != NGX_OK)
        {
            goto invalid;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid limit \"%V\" of client \"%V\": expected "
                       "rpm=, tpm=, rph=, tph=, rpd=, tpd= or max_inflight= "
                       "with a number", &value[i], &cl->name);
    return NGX_CONF_ERROR;
}


/* budget USD per=day|month|total, one line per period */

static char *
ngx_http_conductor_client_budget(ngx_conf_t *cf,
    ngx_http_conductor_client_t *cl)
{
    ngx_str_t                   *value;
    ngx_uint_t                   p;
    ngx_http_conductor_money_t   m;

    value = cf->args->elts;

    if (cf->args->nelts != 3
        || ngx_http_conductor_money_parse(value[1].data, value[1].len, &m)
           != 0
        || (m.usd == 0 && m.pico == 0)
        || value[2].len < 5
        || ngx_strncmp(value[2].data, "per=", 4) != 0)
    {
        goto invalid;
    }

    for (p = 0; ngx_http_conductor_period_names[p].len; p++) {
        if (value[2].len - 4 == ngx_http_conductor_period_names[p].len
            && ngx_strncmp(value[2].data + 4,
                           ngx_http_conductor_period_names[p].data,
                           value[2].len - 4)
               == 0)
        {
            break;
        }
    }

    if (ngx_http_conductor_period_names[p].len == 0) {
        goto invalid;
    }

    if (cl->budgets & (1 << p)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "client \"%V\" has two budgets per=%V",
                           &cl->name, &ngx_http_conductor_period_names[p]);
        return NGX_CONF_ERROR;
    }

    cl->budgets |= 1 << p;
    cl->budget[p] = m;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid budget of client \"%V\": expected budget USD "
                       "per=day|month|total, USD above 0 with at most 12 "
                       "decimals", &cl->name);
    return NGX_CONF_ERROR;
}


/*
 * After the models are known: each client's aliases resolved, the keys
 * sorted by digest for the lookup.
 */

ngx_int_t
ngx_http_conductor_init_clients(ngx_conf_t *cf,
    ngx_http_conductor_main_conf_t *cmcf)
{
    ngx_str_t                     *name;
    ngx_uint_t                     i, j, k;
    ngx_http_conductor_model_t   **m, **mp;
    ngx_http_conductor_client_t  **cl;

    cl = cmcf->clients.elts;

    for (i = 0; i < cmcf->clients.nelts; i++) {

        if (cl[i]->model_names == NULL) {
            continue;
        }

        cl[i]->models = ngx_array_create(cf->pool,
                                         cl[i]->model_names->nelts,
                                         sizeof(ngx_http_conductor_model_t *));
        if (cl[i]->models == NULL) {
            return NGX_ERROR;
        }

        name = cl[i]->model_names->elts;
        m = cmcf->models.elts;

        for (j = 0; j < cl[i]->model_names->nelts; j++) {

            for (k = 0; k < cmcf->models.nelts; k++) {
                if (m[k]->name.len == name[j].len
                    && ngx_strncmp(m[k]->name.data, name[j].data, name[j].len)
                       == 0)
                {
                    break;
                }
            }

            if (k == cmcf->models.nelts) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "conductor_client \"%V\" in %s:%ui: unknown "
                              "model \"%V\" (a conductor_model, or a "
                              "built-in one with conductor_builtin_models "
                              "on)", &cl[i]->name, cl[i]->file, cl[i]->line,
                              &name[j]);
                return NGX_ERROR;
            }

            mp = ngx_array_push(cl[i]->models);
            if (mp == NULL) {
                return NGX_ERROR;
            }

            *mp = m[k];
        }
    }

    ngx_qsort(cmcf->client_keys.elts, cmcf->client_keys.nelts,
              sizeof(ngx_http_conductor_client_key_t),
              ngx_http_conductor_client_key_cmp);

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_conductor_client_key_cmp(const void *a, const void *b)
{
    return ngx_memcmp(a, b, NGX_HTTP_CONDUCTOR_SHA256_LEN);
}


/*
 * conductor_auth: the ACCESS phase finds the client by its key, so that
 * allow / deny / satisfy combine with it as with auth_basic; a request
 * with no key or an unknown one is answered 401 in the endpoint's dialect
 * (the filters write it), and nothing is read or sent upstream.
 */

ngx_int_t
ngx_http_conductor_auth_handler(ngx_http_request_t *r)
{
    ngx_str_t                        key;
    ngx_http_conductor_ctx_t        *ctx;
    ngx_http_conductor_client_t     *cl;
    ngx_http_conductor_loc_conf_t   *lcf;
    ngx_http_conductor_main_conf_t  *cmcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

    if (lcf->auth != 1 || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_conductor_ctx_create(r, NULL);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->client) {
        return NGX_OK;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    if (ngx_http_conductor_credential(r, &key) != NGX_OK) {
        ctx->error = "no API key: send it as \"Authorization: Bearer KEY\" "
                     "or \"x-api-key: KEY\"";
        ctx->error_code = "invalid_api_key";
        return NGX_HTTP_UNAUTHORIZED;
    }

    cl = ngx_http_conductor_client_find(cmcf, &key);

    if (cl == NULL) {
        ctx->error = "invalid API key";
        ctx->error_code = "invalid_api_key";
        return NGX_HTTP_UNAUTHORIZED;
    }

    ctx->client = cl;

    return NGX_OK;
}


/* the key of "Authorization: Bearer KEY", else of "x-api-key: KEY" */

static ngx_int_t
ngx_http_conductor_credential(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char           *p, *last;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h && h->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1)
           == 0)
    {
        p = h->value.data + sizeof("Bearer ") - 1;
        last = h->value.data + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        while (last > p && last[-1] == ' ') {
            last--;
        }

        if (p < last) {
            key->data = p;
            key->len = last - p;
            return NGX_OK;
        }
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("x-api-key") - 1
            && h[i].value.len
            && ngx_strncasecmp(h[i].key.data, (u_char *) "x-api-key",
                               sizeof("x-api-key") - 1)
               == 0)
        {
            *key = h[i].value;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * By digest: a binary search on the digests, which says nothing of the
 * key but where its digest sorts, then a comparison of the whole digest
 * in constant time.
 */

static ngx_http_conductor_client_t *
ngx_http_conductor_client_find(ngx_http_conductor_main_conf_t *cmcf,
    ngx_str_t *key)
{
    ngx_int_t                         rc;
    ngx_uint_t                        lo, hi, mid;
    ngx_http_conductor_client_key_t  *k;
    u_char                            digest[NGX_HTTP_CONDUCTOR_SHA256_LEN];

    ngx_http_conductor_sha256(key->data, key->len, digest);

    k = cmcf->client_keys.elts;
    lo = 0;
    hi = cmcf->client_keys.nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        rc = ngx_memcmp(digest, k[mid].digest, 8);

        if (rc == 0) {
            if (ngx_http_conductor_digest_equal(digest, k[mid].digest)) {
                return k[mid].client;
            }

            /* two digests with the same first 8 bytes: look at both
             * sides (never seen in practice) */
            rc = ngx_memcmp(digest, k[mid].digest,
                            NGX_HTTP_CONDUCTOR_SHA256_LEN);
        }

        if (rc < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return NULL;
}


/* a client limited to some models asks for another: 403 */

ngx_int_t
ngx_http_conductor_client_may_use(ngx_http_conductor_client_t *cl,
    ngx_http_conductor_model_t *m)
{
    ngx_uint_t                    i;
    ngx_http_conductor_model_t  **mp;

    if (cl == NULL || cl->models == NULL) {
        return 1;
    }

    mp = cl->models->elts;

    for (i = 0; i < cl->models->nelts; i++) {
        if (mp[i] == m) {
            return 1;
        }
    }

    return 0;
}


/*
 * The day or month a budget counts now: days, or months, since 1970 (UTC),
 * and when that period ends.
 */

uint64_t
ngx_http_conductor_budget_period(ngx_uint_t period, time_t now,
    time_t *ends)
{
    ngx_tm_t    tm;
    ngx_uint_t  y, mon;
    uint64_t    days;

    if (period == NGX_HTTP_CONDUCTOR_DAY) {
        *ends = (now / 86400 + 1) * 86400;
        return now / 86400;
    }

    if (period == NGX_HTTP_CONDUCTOR_TOTAL) {
        *ends = 0;
        return 0;
    }

    ngx_gmtime(now, &tm);

    y = tm.ngx_tm_year;
    mon = tm.ngx_tm_mon;    /* 1..12 */

    /* the first day of the next month, in days since 1970 */
    if (mon == 12) {
        y++;
        mon = 1;

    } else {
        mon++;
    }

    days = ngx_http_conductor_days_from_civil(y, mon, 1);
    *ends = (time_t) (days * 86400);

    return (uint64_t) (tm.ngx_tm_year - 1970) * 12 + tm.ngx_tm_mon - 1;
}


/* days since 1970-01-01 of a date of the proleptic Gregorian calendar */

uint64_t
ngx_http_conductor_days_from_civil(ngx_uint_t y, ngx_uint_t m, ngx_uint_t d)
{
    ngx_uint_t  era, yoe, doy, doe;

    /* a year that starts in March puts the leap day at its end */
    y -= (m <= 2);
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return (uint64_t) era * 146097 + doe - 719468;
}


ngx_str_t *
ngx_http_conductor_budget_period_name(ngx_uint_t period)
{
    return &ngx_http_conductor_period_names[period];
}
