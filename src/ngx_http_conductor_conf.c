
/*
 * Directive parsers: conductor_zone, conductor_provider { }, conductor_model
 * { }, conductor_strategy, and the tables built from them once the http
 * block is parsed.
 */


#include "ngx_http_conductor.h"


typedef struct {
    const char                       *alias;
    const char                       *cerebras;
    const char                       *nvidia;
} ngx_http_conductor_builtin_t;


static char *ngx_http_conductor_parse_block(ngx_conf_t *cf,
    ngx_conf_handler_pt handler, void *conf);
static char *ngx_http_conductor_provider_line(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_conductor_model_line(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_conductor_parse_url(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p, ngx_str_t *url);
static char *ngx_http_conductor_resolve(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p, ngx_str_t *host);
static char *ngx_http_conductor_parse_key(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p);
static char *ngx_http_conductor_parse_header(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p, ngx_str_t *name, ngx_str_t *value);
static char *ngx_http_conductor_parse_price(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p);
static ngx_int_t ngx_http_conductor_parse_price_value(ngx_str_t *v,
    uint64_t *pico);

static ngx_http_conductor_model_t *ngx_http_conductor_find_model(
    ngx_http_conductor_main_conf_t *cmcf, ngx_str_t *name);
static ngx_int_t ngx_http_conductor_add_builtins(ngx_conf_t *cf,
    ngx_http_conductor_main_conf_t *cmcf);
static ngx_int_t ngx_http_conductor_add_cands(ngx_conf_t *cf,
    ngx_array_t *cands, ngx_http_conductor_provider_t *p, ngx_str_t *model,
    ngx_uint_t priority, ngx_uint_t weight);
static void ngx_http_conductor_sort_cands(ngx_array_t *cands);


ngx_str_t  ngx_http_conductor_limit_names[] = {
    ngx_string("rpm="), ngx_string("tpm="), ngx_string("rph="),
    ngx_string("tph="), ngx_string("rpd="), ngx_string("tpd=")
};


ngx_str_t  ngx_http_conductor_strategy_names[] = {
    ngx_string("round_robin"),
    ngx_string("least_loaded"),
    ngx_string("sequential"),
    ngx_string("simple"),
    ngx_string("priority"),
    ngx_string("weighted"),
    ngx_string("random"),
    ngx_string("least_used"),
    ngx_string("least_latency"),
    ngx_string("least_cost"),
    ngx_null_string
};


/* the Conductor seed's unified names */
static ngx_http_conductor_builtin_t  ngx_http_conductor_builtins[] = {
    { "llama-70b", "llama-3.3-70b", "meta/llama-3.3-70b-instruct" },
    { "llama-8b", "llama3.1-8b", "meta/llama-3.1-8b-instruct" },
    { "llama-3.3-70b", "llama-3.3-70b", "meta/llama-3.3-70b-instruct" },
    { "llama-3.1-8b", "llama3.1-8b", "meta/llama-3.1-8b-instruct" },
    { "llama-3.1-70b", "llama-3.1-70b", "meta/llama-3.1-70b-instruct" },
    { NULL, NULL, NULL }
};


char *
ngx_http_conductor_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (cmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');
    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", expected name:size",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    cmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_conductor_module);
    if (cmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cmcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    cmcf->shm_zone->init = ngx_http_conductor_init_zone;
    cmcf->shm_zone->data = cmcf;

    cmcf->zone_file = cf->conf_file->file.name.data;
    cmcf->zone_line = cf->conf_file->line;

    return NGX_CONF_OK;
}


char *
ngx_http_conductor_provider_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    char                           *rv;
    ngx_str_t                      *value, host;
    ngx_uint_t                      i;
    ngx_http_conductor_key_t       *key;
    ngx_http_conductor_provider_t  *p, **pp;

    value = cf->args->elts;

    if (ngx_http_conductor_valid_name(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid provider name \"%V\": letters, digits, "
                           "\".\", \"_\" and \"-\" only", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_conductor_find_provider(cmcf, &value[1])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate conductor_provider \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    p = ngx_pcalloc(cf->pool, sizeof(ngx_http_conductor_provider_t));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    p->name = value[1];
    p->api = NGX_HTTP_CONDUCTOR_OPENAI;
    p->index = cmcf->providers.nelts;
    p->file = cf->conf_file->file.name.data;
    p->line = cf->conf_file->line;

    if (ngx_array_init(&p->keys, cf->pool, 4,
                       sizeof(ngx_http_conductor_key_t))
        != NGX_OK
        || ngx_array_init(&p->prices, cf->pool, 4,
                          sizeof(ngx_http_conductor_price_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    pp = ngx_array_push(&cmcf->providers);
    if (pp == NULL) {
        return NGX_CONF_ERROR;
    }

    *pp = p;

    rv = ngx_http_conductor_parse_block(cf, ngx_http_conductor_provider_line,
                                        p);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (p->url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "conductor_provider \"%V\" has no url", &p->name);
        return NGX_CONF_ERROR;
    }

    if (p->keys.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "conductor_provider \"%V\" has no key", &p->name);
        return NGX_CONF_ERROR;
    }

    if (p->addrs == NULL) {
        host.len = p->sni.len + 1 + NGX_INT_T_LEN;
        host.data = ngx_pnalloc(cf->pool, host.len);
        if (host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        host.len = ngx_sprintf(host.data, "%V:%d", &p->sni, (int) p->port)
                   - host.data;

        if (ngx_http_conductor_resolve(cf, p, &host) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    /* the header value is known only now that "api" may have been given */
    key = p->keys.elts;

    for (i = 0; i < p->keys.nelts; i++) {

        if (p->api == NGX_HTTP_CONDUCTOR_ANTHROPIC) {
            key[i].header = key[i].secret;
            continue;
        }

        key[i].header.len = sizeof("Bearer ") - 1 + key[i].secret.len;
        key[i].header.data = ngx_pnalloc(cf->pool, key[i].header.len);
        if (key[i].header.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(key[i].header.data, "Bearer %V", &key[i].secret);
    }

    cmcf->nkeys += p->keys.nelts;

    return NGX_CONF_OK;
}


/* a block whose lines are not nginx directives: each goes to handler */

static char *
ngx_http_conductor_parse_block(ngx_conf_t *cf, ngx_conf_handler_pt handler,
    void *conf)
{
    char        *rv;
    ngx_conf_t   save;

    save = *cf;
    cf->handler = handler;
    cf->handler_conf = conf;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    return rv;
}


static char *
ngx_http_conductor_provider_line(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_http_conductor_provider_t *p = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (value[0].len == 3 && ngx_strncmp(value[0].data, "url", 3) == 0) {

        if (cf->args->nelts != 2) {
            goto invalid_args;
        }

        if (p->url.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "duplicate url");
            return NGX_CONF_ERROR;
        }

        return ngx_http_conductor_parse_url(cf, p, &value[1]);
    }

    if (value[0].len == 3 && ngx_strncmp(value[0].data, "api", 3) == 0) {

        if (cf->args->nelts != 2) {
            goto invalid_args;
        }

        if (value[1].len == 6 && ngx_strncmp(value[1].data, "openai", 6) == 0)
        {
            p->api = NGX_HTTP_CONDUCTOR_OPENAI;
            return NGX_CONF_OK;
        }

        if (value[1].len == 9
            && ngx_strncmp(value[1].data, "anthropic", 9) == 0)
        {
            p->api = NGX_HTTP_CONDUCTOR_ANTHROPIC;
            return NGX_CONF_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid api \"%V\", expected openai or anthropic",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[0].len == 3 && ngx_strncmp(value[0].data, "key", 3) == 0) {
        return ngx_http_conductor_parse_key(cf, p);
    }

    if (value[0].len == 7 && ngx_strncmp(value[0].data, "address", 7) == 0) {

        if (cf->args->nelts != 2) {
            goto invalid_args;
        }

        if (p->addrs) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "duplicate address");
            return NGX_CONF_ERROR;
        }

        return ngx_http_conductor_resolve(cf, p, &value[1]);
    }

    if (value[0].len == 5 && ngx_strncmp(value[0].data, "price", 5) == 0) {
        return ngx_http_conductor_parse_price(cf, p);
    }

    if (value[0].len == 6 && ngx_strncmp(value[0].data, "header", 6) == 0) {

        if (cf->args->nelts != 3) {
            goto invalid_args;
        }

        return ngx_http_conductor_parse_header(cf, p, &value[1], &value[2]);
    }

    if (value[0].len == 12
        && ngx_strncmp(value[0].data, "health_check", 12) == 0)
    {
        return ngx_http_conductor_health_conf(cf, p);
    }

    /* a shared price list: "include pricing.conf;" inside the block */
    if (value[0].len == 7 && ngx_strncmp(value[0].data, "include", 7) == 0) {

        if (cf->args->nelts != 2) {
            goto invalid_args;
        }

        return ngx_conf_include(cf, dummy, conf);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in conductor_provider",
                       &value[0]);
    return NGX_CONF_ERROR;

invalid_args:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid number of arguments in \"%V\"", &value[0]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_conductor_parse_url(ngx_conf_t *cf, ngx_http_conductor_provider_t *p,
    ngx_str_t *url)
{
    size_t     add;
    u_char    *last, *q;
    in_port_t  port;
    ngx_url_t  u;

    if (url->len > 7 && ngx_strncasecmp(url->data, (u_char *) "http://", 7)
                        == 0)
    {
        add = 7;
        port = 80;
        ngx_str_set(&p->scheme, "http");

    } else if (url->len > 8
               && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0)
    {
#if (NGX_HTTP_SSL)
        add = 8;
        port = 443;
        p->ssl = 1;
        ngx_str_set(&p->scheme, "https");
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "https url \"%V\" needs nginx built with ssl", url);
        return NGX_CONF_ERROR;
#endif

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid url \"%V\": it must start with http:// "
                           "or https://", url);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = url->data + add;
    u.url.len = url->len - add;
    u.default_port = port;
    u.uri_part = 1;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in url \"%V\"",
                           u.err ? u.err : "invalid host", url);
        return NGX_CONF_ERROR;
    }

    if (ngx_strlchr(u.uri.data, u.uri.data + u.uri.len, '#')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid url \"%V\": no fragment allowed", url);
        return NGX_CONF_ERROR;
    }

    /* a query of the provider's own (Azure's api-version) goes on every
     * request in place of the client's, which never goes upstream */
    q = ngx_strlchr(u.uri.data, u.uri.data + u.uri.len, '?');

    if (q) {
        p->args.data = q + 1;
        p->args.len = u.uri.data + u.uri.len - (q + 1);
        u.uri.len = q - u.uri.data;
    }

    p->url = *url;
    p->sni = u.host;
    p->port = u.port;

    if (u.no_port || u.port == port) {
        p->host = u.host;

    } else {
        p->host.data = ngx_pnalloc(cf->pool, u.host.len + NGX_INT_T_LEN + 1);
        if (p->host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        last = ngx_sprintf(p->host.data, "%V:%d", &u.host, (int) u.port);
        p->host.len = last - p->host.data;
    }

    p->prefix = u.uri;

    while (p->prefix.len && p->prefix.data[p->prefix.len - 1] == '/') {
        p->prefix.len--;
    }

    return NGX_CONF_OK;
}


/*
 * "header NAME VALUE": a header of the provider's own on every request to
 * it (an organisation, a project), kept as the request lines it becomes.
 */

static char *
ngx_http_conductor_parse_header(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p, ngx_str_t *name, ngx_str_t *value)
{
    u_char      *d;
    ngx_uint_t   i;

    for (i = 0; i < name->len; i++) {
        if (name->data[i] <= ' ' || name->data[i] == ':'
            || name->data[i] >= 0x7f)
        {
            goto invalid;
        }
    }

    for (i = 0; i < value->len; i++) {
        if (value->data[i] == CR || value->data[i] == LF) {
            goto invalid;
        }
    }

    if (name->len == 0
        || (name->len == 13
            && ngx_strncasecmp(name->data, (u_char *) "authorization", 13)
               == 0)
        || (name->len == 9
            && ngx_strncasecmp(name->data, (u_char *) "x-api-key", 9) == 0)
        || (name->len == 4
            && ngx_strncasecmp(name->data, (u_char *) "host", 4) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "header \"%V\" cannot be set: the module sends "
                           "it itself (the key's secret goes in a key line)",
                           name);
        return NGX_CONF_ERROR;
    }

    d = ngx_pnalloc(cf->pool, p->headers.len + name->len + value->len + 4);
    if (d == NULL) {
        return NGX_CONF_ERROR;
    }

    p->headers.data = ngx_cpymem(d, p->headers.data, p->headers.len);
    p->headers.data = ngx_cpymem(p->headers.data, name->data, name->len);
    *p->headers.data++ = ':';
    *p->headers.data++ = ' ';
    p->headers.data = ngx_cpymem(p->headers.data, value->data, value->len);
    *p->headers.data++ = CR;
    *p->headers.data++ = LF;
    p->headers.len = p->headers.data - d;
    p->headers.data = d;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid header \"%V\": a token name and a value "
                       "without line breaks are expected", name);
    return NGX_CONF_ERROR;
}


/*
 * The addresses to connect to, resolved here, at configuration time: a
 * worker never resolves.  By default the url's host; "address" connects
 * elsewhere (a pinned or private endpoint) while Host, SNI and the
 * certificate check keep the url's name.
 */

static char *
ngx_http_conductor_resolve(ngx_conf_t *cf, ngx_http_conductor_provider_t *p,
    ngx_str_t *host)
{
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *host;
    u.default_port = p->port ? p->port : (p->ssl ? 443 : 80);
    u.no_resolve = 0;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s in \"%V\" of provider \"%V\"",
                           u.err ? u.err : "host not found", host, &p->name);
        return NGX_CONF_ERROR;
    }

    p->addrs = u.addrs;
    p->naddrs = u.naddrs;

    return NGX_CONF_OK;
}


static char *
ngx_http_conductor_parse_key(ngx_conf_t *cf, ngx_http_conductor_provider_t *p)
{
    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_conductor_key_t  *key;

    value = cf->args->elts;

    if (cf->args->nelts < 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key needs a name and a secret: "
                           "key NAME SECRET|env=VAR|file=PATH [limits]");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_conductor_valid_name(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid key name \"%V\": letters, digits, "
                           "\".\", \"_\" and \"-\" only", &value[1]);
        return NGX_CONF_ERROR;
    }

    key = p->keys.elts;

    for (i = 0; i < p->keys.nelts; i++) {
        if (key[i].name.len == value[1].len
            && ngx_strncmp(key[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate key name \"%V\" in provider \"%V\"",
                               &value[1], &p->name);
            return NGX_CONF_ERROR;
        }
    }

    key = ngx_array_push(&p->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_http_conductor_key_t));

    key->name = value[1];
    key->provider = p;

    if (ngx_http_conductor_read_secret(cf, &value[2], &key->name, &key->secret)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 3; i < cf->args->nelts; i++) {
        if (ngx_http_conductor_parse_limit(&value[i], key->limit,
                                           &key->max_inflight)
            != NGX_OK)
        {
            goto invalid;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" of key \"%V\": expected "
                       "rpm=, tpm=, rph=, tph=, rpd=, tpd= or max_inflight= "
                       "with a number", &value[i], &key->name);
    return NGX_CONF_ERROR;
}


/*
 * One limit of a key or a client: rpm= tpm= rph= tph= rpd= tpd= or
 * max_inflight= with a number; NGX_ERROR for anything else.
 */

ngx_int_t
ngx_http_conductor_parse_limit(ngx_str_t *v, ngx_uint_t *limit,
    ngx_uint_t *max_inflight)
{
    ngx_int_t   n;
    ngx_uint_t  j;

    for (j = 0; j < NGX_HTTP_CONDUCTOR_NLIMITS; j++) {
        if (v->len > 4
            && ngx_strncmp(v->data, ngx_http_conductor_limit_names[j].data, 4)
               == 0)
        {
            n = ngx_atoi(v->data + 4, v->len - 4);
            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            limit[j] = n;
            return NGX_OK;
        }
    }

    if (v->len > 13 && ngx_strncmp(v->data, "max_inflight=", 13) == 0) {
        n = ngx_atoi(v->data + 13, v->len - 13);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        *max_inflight = n;
        return NGX_OK;
    }

    return NGX_ERROR;
}


char *
ngx_http_conductor_read_secret(ngx_conf_t *cf, ngx_str_t *source,
    ngx_str_t *key_name, ngx_str_t *secret)
{
    u_char           *s, *name;
    off_t             size;
    ssize_t           n;
    ngx_str_t         path;
    ngx_uint_t        i;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (source->len > 4 && ngx_strncmp(source->data, "env=", 4) == 0) {

        name = ngx_pnalloc(cf->pool, source->len - 4 + 1);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(name, source->data + 4, source->len - 4 + 1);

        s = (u_char *) getenv((char *) name);

        if (s == NULL || *s == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "environment variable \"%s\" of key \"%V\" "
                               "is not set", name, key_name);
            return NGX_CONF_ERROR;
        }

        secret->len = ngx_strlen(s);
        secret->data = ngx_pnalloc(cf->pool, secret->len);
        if (secret->data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(secret->data, s, secret->len);

    } else if (source->len > 5 && ngx_strncmp(source->data, "file=", 5) == 0) {

        path.len = source->len - 5;
        path.data = source->data + 5;

        if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&file, sizeof(ngx_file_t));
        file.name = path;
        file.log = cf->log;

        file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

        if (file.fd == NGX_INVALID_FILE) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "cannot read the file \"%V\" of key \"%V\"",
                               &path, key_name);
            return NGX_CONF_ERROR;
        }

        if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
            || (size = ngx_file_size(&fi)) > 65536)
        {
            ngx_close_file(file.fd);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the file \"%V\" of key \"%V\" is not a small "
                               "regular file", &path, key_name);
            return NGX_CONF_ERROR;
        }

        secret->data = ngx_pnalloc(cf->pool, size + 1);
        if (secret->data == NULL) {
            ngx_close_file(file.fd);
            return NGX_CONF_ERROR;
        }

        n = ngx_read_file(&file, secret->data, size, 0);

        ngx_close_file(file.fd);

        if (n != size) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cannot read the file \"%V\" of key \"%V\"",
                               &path, key_name);
            return NGX_CONF_ERROR;
        }

        secret->len = n;

        /* a secret file usually ends with a newline */
        while (secret->len
               && (secret->data[secret->len - 1] == '\n'
                   || secret->data[secret->len - 1] == '\r'
                   || secret->data[secret->len - 1] == ' '
                   || secret->data[secret->len - 1] == '\t'))
        {
            secret->len--;
        }

    } else {
        *secret = *source;
    }

    if (secret->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the secret of key \"%V\" is empty", key_name);
        return NGX_CONF_ERROR;
    }

    /* the secret goes into a request header: no way to inject another */
    for (i = 0; i < secret->len; i++) {
        if (secret->data[i] < 0x20 || secret->data[i] == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the secret of key \"%V\" contains a control "
                               "character", key_name);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_conductor_parse_price(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p)
{
    uint64_t                    *field;
    ngx_str_t                   *value, v;
    ngx_uint_t                   i;
    ngx_http_conductor_price_t  *price;

    value = cf->args->elts;

    if (cf->args->nelts < 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "price needs a model and prices: price MODEL "
                           "input=USD output=USD [cached_input=USD] "
                           "[cache_write=USD] (per million tokens)");
        return NGX_CONF_ERROR;
    }

    price = ngx_array_push(&p->prices);
    if (price == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(price, sizeof(ngx_http_conductor_price_t));
    price->model = value[1];

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len > 6 && ngx_strncmp(value[i].data, "input=", 6) == 0) {
            field = &price->input;
            v.data = value[i].data + 6;

        } else if (value[i].len > 7
                   && ngx_strncmp(value[i].data, "output=", 7) == 0)
        {
            field = &price->output;
            v.data = value[i].data + 7;

        } else if (value[i].len > 13
                   && ngx_strncmp(value[i].data, "cached_input=", 13) == 0)
        {
            field = &price->cached_input;
            v.data = value[i].data + 13;

        } else if (value[i].len > 12
                   && ngx_strncmp(value[i].data, "cache_write=", 12) == 0)
        {
            field = &price->cache_write;
            v.data = value[i].data + 12;

        } else {
            goto invalid;
        }

        v.len = value[i].data + value[i].len - v.data;

        if (ngx_http_conductor_parse_price_value(&v, field) != NGX_OK) {
            goto invalid;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid price parameter \"%V\": expected input=, "
                       "output=, cached_input= or cache_write= with USD per "
                       "million tokens, at most 6 decimals", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * USD per million tokens is, exactly, pico-USD per token: integer cost
 * arithmetic with no rounding for prices of up to six decimals.
 */

static ngx_int_t
ngx_http_conductor_parse_price_value(ngx_str_t *v, uint64_t *pico)
{
    u_char      *p, *last;
    uint64_t     units, frac;
    ngx_uint_t   digits, fraction;

    units = 0;
    frac = 0;
    digits = 0;
    fraction = 0;
    last = v->data + v->len;

    for (p = v->data; p < last; p++) {

        if (*p == '.' && !fraction) {
            fraction = 1;
            continue;
        }

        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        if (fraction) {
            if (++digits > 6) {
                return NGX_ERROR;
            }

            frac = frac * 10 + (*p - '0');

        } else {
            if (units > 1000000) {
                return NGX_ERROR;
            }

            units = units * 10 + (*p - '0');
        }
    }

    if (v->len == 0 || (fraction && digits == 0)) {
        return NGX_ERROR;
    }

    while (digits++ < 6) {
        frac *= 10;
    }

    *pico = units * 1000000 + frac;

    return NGX_OK;
}


char *
ngx_http_conductor_model_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    char                        *rv;
    ngx_str_t                   *value;
    ngx_http_conductor_model_t  *m, **mp;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NGX_HTTP_CONDUCTOR_ALIAS_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid model name \"%V\": 1 to %d bytes",
                           &value[1], NGX_HTTP_CONDUCTOR_ALIAS_MAX);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_conductor_find_model(cmcf, &value[1])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate conductor_model \"%V\" (aliases are "
                           "matched exactly, but cannot differ in case "
                           "only)", &value[1]);
        return NGX_CONF_ERROR;
    }

    m = ngx_pcalloc(cf->pool, sizeof(ngx_http_conductor_model_t));
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    m->name = value[1];

    if (ngx_array_init(&m->targets, cf->pool, 4,
                       sizeof(ngx_http_conductor_target_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_conductor_parse_block(cf, ngx_http_conductor_model_line, m);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (m->targets.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "conductor_model \"%V\" has no provider model",
                           &m->name);
        return NGX_CONF_ERROR;
    }

    mp = ngx_array_push(&cmcf->models);
    if (mp == NULL) {
        return NGX_CONF_ERROR;
    }

    *mp = m;

    return NGX_CONF_OK;
}


static char *
ngx_http_conductor_model_line(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_http_conductor_model_t *m = conf;

    ngx_int_t                        n;
    ngx_str_t                       *value;
    ngx_uint_t                       i;
    ngx_http_conductor_target_t     *t;
    ngx_http_conductor_main_conf_t  *cmcf;

    value = cf->args->elts;

    if (cf->args->nelts < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "expected \"PROVIDER MODEL [priority=N] "
                           "[weight=N];\" in conductor_model \"%V\"",
                           &m->name);
        return NGX_CONF_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_conductor_module);

    t = ngx_array_push(&m->targets);
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    t->provider = ngx_http_conductor_find_provider(cmcf, &value[0]);

    if (t->provider == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown provider \"%V\" in conductor_model "
                           "\"%V\" (a conductor_provider must be defined "
                           "before the models that use it)",
                           &value[0], &m->name);
        return NGX_CONF_ERROR;
    }

    t->model = value[1];
    t->priority = 1;
    t->weight = 1;

    if (t->model.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty model name");
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len > 9
            && ngx_strncmp(value[i].data, "priority=", 9) == 0)
        {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);
            if (n == NGX_ERROR || n < 1 || n > 100) {
                goto invalid;
            }

            t->priority = n;
            continue;
        }

        if (value[i].len > 7 && ngx_strncmp(value[i].data, "weight=", 7) == 0)
        {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n == NGX_ERROR || n < 1 || n > 10000) {
                goto invalid;
            }

            t->weight = n;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected priority=1..100 "
                       "or weight=1..10000", &value[i]);
    return NGX_CONF_ERROR;
}


char *
ngx_http_conductor_strategy(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_loc_conf_t *lcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (lcf->strategy != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_conductor_strategy_names[i].len; i++) {
        if (ngx_http_conductor_strategy_names[i].len == value[1].len
            && ngx_strncmp(ngx_http_conductor_strategy_names[i].data,
                           value[1].data, value[1].len)
               == 0)
        {
            lcf->strategy = i;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown strategy \"%V\": expected round_robin, "
                       "least_loaded, sequential, simple, priority, "
                       "weighted, random, least_used, least_latency or "
                       "least_cost", &value[1]);
    return NGX_CONF_ERROR;
}


/*
 * A "name=value" parameter of a directive: NGX_OK with the value when arg
 * is that name's, NGX_DECLINED when it is another's, NGX_ERROR when the
 * value is not a number (a time) or is zero.
 */

ngx_int_t
ngx_http_conductor_param_num(ngx_str_t *arg, const char *name,
    ngx_uint_t *out)
{
    size_t     len;
    ngx_int_t  n;

    len = ngx_strlen(name);

    if (arg->len <= len + 1 || ngx_strncmp(arg->data, name, len) != 0
        || arg->data[len] != '=')
    {
        return NGX_DECLINED;
    }

    n = ngx_atoi(arg->data + len + 1, arg->len - len - 1);
    if (n == NGX_ERROR || n == 0) {
        return NGX_ERROR;
    }

    *out = n;

    return NGX_OK;
}


ngx_int_t
ngx_http_conductor_param_msec(ngx_str_t *arg, const char *name,
    ngx_msec_t *out)
{
    size_t      len;
    ngx_str_t   v;
    ngx_msec_t  t;

    len = ngx_strlen(name);

    if (arg->len <= len + 1 || ngx_strncmp(arg->data, name, len) != 0
        || arg->data[len] != '=')
    {
        return NGX_DECLINED;
    }

    v.data = arg->data + len + 1;
    v.len = arg->len - len - 1;

    t = ngx_parse_time(&v, 0);
    if (t == (ngx_msec_t) NGX_ERROR || t == 0) {
        return NGX_ERROR;
    }

    *out = t;

    return NGX_OK;
}


/*
 * The NAME=VALUE parameters of a directive, from argument "first" on, by
 * a table: one loop and one message for every directive that has them.
 */

char *
ngx_http_conductor_params(ngx_conf_t *cf, ngx_uint_t first,
    ngx_http_conductor_param_t *params)
{
    u_char                      *p, *last;
    ngx_int_t                    rc;
    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_http_conductor_param_t  *pm;
    u_char                       expected[256];

    value = cf->args->elts;

    for (i = first; i < cf->args->nelts; i++) {

        rc = NGX_DECLINED;

        for (pm = params; pm->name && rc == NGX_DECLINED; pm++) {
            rc = (pm->type == NGX_HTTP_CONDUCTOR_PARAM_MSEC)
                 ? ngx_http_conductor_param_msec(&value[i], pm->name,
                                                 pm->out)
                 : ngx_http_conductor_param_num(&value[i], pm->name,
                                                pm->out);
        }

        if (rc == NGX_OK) {
            continue;
        }

        p = expected;
        last = expected + sizeof(expected);

        for (pm = params; pm->name; pm++) {
            p = ngx_slprintf(p, last, "%s%s=%s", pm == params ? "" : ", ",
                             pm->name,
                             pm->type == NGX_HTTP_CONDUCTOR_PARAM_MSEC
                             ? "TIME" : "N");
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": expected %*s",
                           &value[i], p - expected, expected);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* conductor_breaker failures=N timeout=TIME */

char *
ngx_http_conductor_breaker_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    ngx_http_conductor_param_t  params[] = {
        { "failures", NGX_HTTP_CONDUCTOR_PARAM_NUM, &cmcf->breaker_failures },
        { "timeout", NGX_HTTP_CONDUCTOR_PARAM_MSEC, &cmcf->breaker_timeout },
        { NULL, 0, NULL }
    };

    if (cmcf->breaker_failures != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    if (ngx_http_conductor_params(cf, 1, params) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (cmcf->breaker_failures == NGX_CONF_UNSET_UINT) {
        cmcf->breaker_failures = 5;
    }

    return NGX_CONF_OK;
}


/* conductor_cooldown max=TIME disabled=TIME */

char *
ngx_http_conductor_cooldown_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    ngx_http_conductor_param_t  params[] = {
        { "max", NGX_HTTP_CONDUCTOR_PARAM_MSEC, &cmcf->cooldown_max },
        { "disabled", NGX_HTTP_CONDUCTOR_PARAM_MSEC, &cmcf->disabled_time },
        { NULL, 0, NULL }
    };

    if (cmcf->cooldown_max != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    if (ngx_http_conductor_params(cf, 1, params) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (cmcf->cooldown_max == NGX_CONF_UNSET_MSEC) {
        cmcf->cooldown_max = 15 * 60 * 1000;
    }

    return NGX_CONF_OK;
}


/* conductor_estimate completion=N */

char *
ngx_http_conductor_estimate_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_loc_conf_t *lcf = conf;

    ngx_str_t  *value;

    if (lcf->completion_estimate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len > 11
        && ngx_strncmp(value[1].data, "completion=", 11) == 0)
    {
        lcf->completion_estimate = ngx_atoi(value[1].data + 11,
                                            value[1].len - 11);

        if (lcf->completion_estimate != (ngx_uint_t) NGX_ERROR) {
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected completion=N "
                       "(tokens a request without max_tokens is assumed to "
                       "use)", &value[1]);
    return NGX_CONF_ERROR;
}


/* conductor_failover 429 5xx timeout error auth | off */

char *
ngx_http_conductor_failover_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_loc_conf_t *lcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, j, mask;

    static struct {
        ngx_str_t   name;
        ngx_uint_t  mask;
    } classes[] = {
        { ngx_string("429"), NGX_HTTP_UPSTREAM_FT_HTTP_429 },
        { ngx_string("5xx"), NGX_HTTP_UPSTREAM_FT_HTTP_500
                             |NGX_HTTP_UPSTREAM_FT_HTTP_502
                             |NGX_HTTP_UPSTREAM_FT_HTTP_503
                             |NGX_HTTP_UPSTREAM_FT_HTTP_504 },
        { ngx_string("500"), NGX_HTTP_UPSTREAM_FT_HTTP_500 },
        { ngx_string("502"), NGX_HTTP_UPSTREAM_FT_HTTP_502 },
        { ngx_string("503"), NGX_HTTP_UPSTREAM_FT_HTTP_503 },
        { ngx_string("504"), NGX_HTTP_UPSTREAM_FT_HTTP_504 },
        { ngx_string("timeout"), NGX_HTTP_UPSTREAM_FT_TIMEOUT },
        { ngx_string("error"), NGX_HTTP_UPSTREAM_FT_ERROR
                               |NGX_HTTP_UPSTREAM_FT_INVALID_HEADER },
        /* nginx can retry a 403, not a 401 (that key is disabled still) */
        { ngx_string("auth"), NGX_HTTP_UPSTREAM_FT_HTTP_403 },
        { ngx_null_string, 0 }
    };

    if (lcf->failover != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && value[1].len == 3
        && ngx_strncmp(value[1].data, "off", 3) == 0)
    {
        lcf->failover = NGX_HTTP_UPSTREAM_FT_OFF;
        return NGX_CONF_OK;
    }

    /* the body is read before the first attempt: a POST may be re-sent */
    mask = NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT;

    for (i = 1; i < cf->args->nelts; i++) {

        for (j = 0; classes[j].name.len; j++) {
            if (classes[j].name.len == value[i].len
                && ngx_strncmp(classes[j].name.data, value[i].data,
                               value[i].len)
                   == 0)
            {
                mask |= classes[j].mask;
                break;
            }
        }

        if (classes[j].name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\": expected 429, 5xx, "
                               "500, 502, 503, 504, timeout, error, auth or "
                               "off", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    lcf->failover = mask;

    return NGX_CONF_OK;
}


/* conductor_queue timeout=TIME [max=N] */

char *
ngx_http_conductor_queue_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_loc_conf_t *lcf = conf;

    ngx_http_conductor_param_t  params[] = {
        { "timeout", NGX_HTTP_CONDUCTOR_PARAM_MSEC, &lcf->queue_timeout },
        { "max", NGX_HTTP_CONDUCTOR_PARAM_NUM, &lcf->queue_max },
        { NULL, 0, NULL }
    };

    if (lcf->queue_timeout != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    if (ngx_http_conductor_params(cf, 1, params) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (lcf->queue_timeout == NGX_CONF_UNSET_MSEC) {
        return "needs timeout=";
    }

    return NGX_CONF_OK;
}


/*
 * conductor_stream_timeout idle=TIME: a stream whose provider sends nothing
 * for that long is ended with an error event (default: proxy_read_timeout
 * alone).  first= is refused with the reason: see README.
 */

char *
ngx_http_conductor_stream_timeout_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_conductor_loc_conf_t *lcf = conf;

    ngx_int_t    rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (lcf->stream_idle != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        rc = ngx_http_conductor_param_msec(&value[i], "idle",
                                           &lcf->stream_idle);

        if (rc == NGX_DECLINED && value[i].len > 6
            && ngx_strncmp(value[i].data, "first=", 6) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"first=\" is not supported: nginx has "
                               "sent the answer's header to the client when "
                               "the first event is awaited, so the request "
                               "cannot fail over any more");
            return NGX_CONF_ERROR;
        }

        if (rc != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": expected "
                               "idle=TIME", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (lcf->stream_idle == NGX_CONF_UNSET_MSEC || lcf->stream_idle == 0) {
        return "needs idle=TIME, above 0";
    }

    return NGX_CONF_OK;
}


ngx_http_conductor_provider_t *
ngx_http_conductor_find_provider(ngx_http_conductor_main_conf_t *cmcf,
    ngx_str_t *name)
{
    ngx_uint_t                       i;
    ngx_http_conductor_provider_t  **p;

    p = cmcf->providers.elts;

    for (i = 0; i < cmcf->providers.nelts; i++) {
        if (p[i]->name.len == name->len
            && ngx_strncmp(p[i]->name.data, name->data, name->len) == 0)
        {
            return p[i];
        }
    }

    return NULL;
}


static ngx_http_conductor_model_t *
ngx_http_conductor_find_model(ngx_http_conductor_main_conf_t *cmcf,
    ngx_str_t *name)
{
    ngx_uint_t                    i;
    ngx_http_conductor_model_t  **m;

    m = cmcf->models.elts;

    /* in any case: an alias is matched exactly, but two that differ
     * in case only would share a slot of the alias hash */
    for (i = 0; i < cmcf->models.nelts; i++) {
        if (m[i]->name.len == name->len
            && ngx_strncasecmp(m[i]->name.data, name->data, name->len) == 0)
        {
            return m[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_conductor_valid_name(ngx_str_t *name)
{
    ngx_uint_t  i;
    u_char      c;

    if (name->len == 0 || name->len > 64) {
        return NGX_ERROR;
    }

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
        {
            continue;
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Once the http block is parsed: the built-in aliases, each alias's
 * candidates per dialect sorted by priority, the pass-through candidates
 * for unknown models, and the alias hash.
 */

ngx_int_t
ngx_http_conductor_init_models(ngx_conf_t *cf,
    ngx_http_conductor_main_conf_t *cmcf)
{
    size_t                           elt, bucket;
    ngx_uint_t                       i, j, d;
    ngx_array_t                      keys;
    ngx_hash_key_t                  *hk;
    ngx_hash_init_t                  hash;
    ngx_http_conductor_model_t     **m, *pt;
    ngx_http_conductor_target_t     *t;
    ngx_http_conductor_provider_t  **p;

    if (cmcf->builtin_models
        && ngx_http_conductor_add_builtins(cf, cmcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_array_init(&keys, cf->temp_pool, cmcf->models.nelts + 1,
                       sizeof(ngx_hash_key_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    m = cmcf->models.elts;
    bucket = 64;

    for (i = 0; i < cmcf->models.nelts; i++) {

        for (d = 0; d < NGX_HTTP_CONDUCTOR_NDIALECTS; d++) {
            if (ngx_array_init(&m[i]->cands[d], cf->pool, 4,
                               sizeof(ngx_http_conductor_cand_t))
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        t = m[i]->targets.elts;

        for (j = 0; j < m[i]->targets.nelts; j++) {
            d = t[j].provider->api;

            if (ngx_http_conductor_add_cands(cf, &m[i]->cands[d],
                                             t[j].provider, &t[j].model,
                                             t[j].priority, t[j].weight)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        for (d = 0; d < NGX_HTTP_CONDUCTOR_NDIALECTS; d++) {
            ngx_http_conductor_sort_cands(&m[i]->cands[d]);
        }

        hk = ngx_array_push(&keys);
        if (hk == NULL) {
            return NGX_ERROR;
        }

        /* the hash is of the lowercased name (ngx_hash keeps names so;
         * two aliases never differ in case only); the route compares the
         * exact name after the lookup */
        hk->key = m[i]->name;
        hk->key_hash = ngx_hash_key_lc(hk->key.data, hk->key.len);
        hk->value = m[i];

        elt = sizeof(void *) + ngx_align(m[i]->name.len + 2, sizeof(void *));
        bucket = ngx_max(bucket, elt + sizeof(void *));
    }

    p = cmcf->providers.elts;

    for (d = 0; d < NGX_HTTP_CONDUCTOR_NDIALECTS; d++) {
        pt = &cmcf->passthrough[d];

        if (d == NGX_HTTP_CONDUCTOR_OPENAI) {
            ngx_str_set(&pt->name, "*openai");

        } else {
            ngx_str_set(&pt->name, "*anthropic");
        }

        if (ngx_array_init(&pt->cands[d], cf->pool, 4,
                           sizeof(ngx_http_conductor_cand_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < cmcf->providers.nelts; i++) {
            if (p[i]->api == d
                && ngx_http_conductor_add_cands(cf, &pt->cands[d], p[i], NULL,
                                                1, 1)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    hash.hash = &cmcf->model_hash;
    hash.key = ngx_hash_key;
    hash.max_size = 4096;
    /* room for the longest alias (NGX_HTTP_CONDUCTOR_ALIAS_MAX) */
    hash.bucket_size = ngx_align(bucket, ngx_cacheline_size);
    hash.name = "conductor_model_hash";
    hash.pool = cf->pool;
    hash.temp_pool = NULL;

    return ngx_hash_init(&hash, keys.elts, keys.nelts);
}


static ngx_int_t
ngx_http_conductor_add_cands(ngx_conf_t *cf, ngx_array_t *cands,
    ngx_http_conductor_provider_t *p, ngx_str_t *model, ngx_uint_t priority,
    ngx_uint_t weight)
{
    ngx_uint_t                  i;
    ngx_http_conductor_key_t   *key;
    ngx_http_conductor_cand_t  *c;

    key = p->keys.elts;

    for (i = 0; i < p->keys.nelts; i++) {

        if (cands->nelts == NGX_HTTP_CONDUCTOR_MAX_CANDS) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "more than %d keys serve one model (provider "
                          "\"%V\")", NGX_HTTP_CONDUCTOR_MAX_CANDS, &p->name);
            return NGX_ERROR;
        }

        c = ngx_array_push(cands);
        if (c == NULL) {
            return NGX_ERROR;
        }

        c->provider = p;
        c->key = &key[i];
        c->priority = priority;
        c->weight = weight;

        c->index = cands->nelts - 1;

        if (model == NULL) {
            ngx_str_null(&c->model);
            ngx_str_null(&c->model_json);
            continue;
        }

        c->model = *model;
        c->price = ngx_http_conductor_find_price(p, model);
        c->model_json.len = ngx_http_conductor_json_escape_len(model->data,
                                                               model->len);
        c->model_json.data = ngx_pnalloc(cf->pool, c->model_json.len);
        if (c->model_json.data == NULL) {
            return NGX_ERROR;
        }

        ngx_http_conductor_json_escape(c->model_json.data, model->data,
                                       model->len);
    }

    return NGX_OK;
}


/* stable: keys keep their configuration order inside a tier */

static void
ngx_http_conductor_sort_cands(ngx_array_t *cands)
{
    ngx_uint_t                 i, j;
    ngx_http_conductor_cand_t  *c, tmp;

    c = cands->elts;

    for (i = 1; i < cands->nelts; i++) {
        tmp = c[i];

        for (j = i; j > 0 && c[j - 1].priority > tmp.priority; j--) {
            c[j] = c[j - 1];
        }

        c[j] = tmp;
    }

    for (i = 0; i < cands->nelts; i++) {
        c[i].index = i;
    }
}


static ngx_int_t
ngx_http_conductor_add_builtins(ngx_conf_t *cf,
    ngx_http_conductor_main_conf_t *cmcf)
{
    ngx_str_t                        name, cerebras, nvidia;
    ngx_http_conductor_model_t      *m, **mp;
    ngx_http_conductor_target_t     *t;
    ngx_http_conductor_builtin_t    *b;
    ngx_http_conductor_provider_t   *pc, *pn;

    ngx_str_set(&cerebras, "cerebras");
    ngx_str_set(&nvidia, "nvidia");

    pc = ngx_http_conductor_find_provider(cmcf, &cerebras);
    pn = ngx_http_conductor_find_provider(cmcf, &nvidia);

    if (pc == NULL && pn == NULL) {
        return NGX_OK;
    }

    for (b = ngx_http_conductor_builtins; b->alias; b++) {

        name.data = (u_char *) b->alias;
        name.len = ngx_strlen(b->alias);

        /* an alias the configuration defines wins over the built-in one */
        if (ngx_http_conductor_find_model(cmcf, &name)) {
            continue;
        }

        m = ngx_pcalloc(cf->pool, sizeof(ngx_http_conductor_model_t));
        if (m == NULL) {
            return NGX_ERROR;
        }

        m->name = name;
        m->builtin = 1;

        if (ngx_array_init(&m->targets, cf->pool, 2,
                           sizeof(ngx_http_conductor_target_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (pc) {
            t = ngx_array_push(&m->targets);
            if (t == NULL) {
                return NGX_ERROR;
            }

            t->provider = pc;
            t->model.data = (u_char *) b->cerebras;
            t->model.len = ngx_strlen(b->cerebras);
            t->priority = 1;
            t->weight = 1;
        }

        if (pn) {
            t = ngx_array_push(&m->targets);
            if (t == NULL) {
                return NGX_ERROR;
            }

            t->provider = pn;
            t->model.data = (u_char *) b->nvidia;
            t->model.len = ngx_strlen(b->nvidia);
            t->priority = 1;
            t->weight = 1;
        }

        mp = ngx_array_push(&cmcf->models);
        if (mp == NULL) {
            return NGX_ERROR;
        }

        *mp = m;
    }

    return NGX_OK;
}


ngx_http_conductor_price_t *
ngx_http_conductor_find_price(ngx_http_conductor_provider_t *p,
    ngx_str_t *model)
{
    ngx_uint_t                   i;
    ngx_http_conductor_price_t  *price;

    price = p->prices.elts;

    for (i = 0; i < p->prices.nelts; i++) {
        if (price[i].model.len == model->len
            && ngx_strncmp(price[i].model.data, model->data, model->len) == 0)
        {
            return &price[i];
        }
    }

    return NULL;
}
