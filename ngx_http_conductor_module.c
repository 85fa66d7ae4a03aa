
/*
 * ngx_http_conductor_module: an LLM API gateway inside nginx.
 *
 * This file is the module's map: directives, configuration contexts and
 * init hooks.  The work is done in src/, one file per concern.
 */


#include "ngx_http_conductor.h"


static ngx_int_t ngx_http_conductor_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_conductor_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_conductor_init_process(ngx_cycle_t *cycle);
static void ngx_http_conductor_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_conductor_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_conductor_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_conductor_create_srv_conf(ngx_conf_t *cf);
static void *ngx_http_conductor_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_conductor_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_conductor_route(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


extern ngx_module_t  ngx_http_proxy_module;


static ngx_conf_num_bounds_t  ngx_http_conductor_retries_bounds = {
    ngx_conf_check_num_bounds, 0, NGX_HTTP_CONDUCTOR_MAX_ATTEMPTS - 1
};


static ngx_conf_enum_t  ngx_http_conductor_unknown_models[] = {
    { ngx_string("pass"), 0 },
    { ngx_string("reject"), 1 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_conductor_commands[] = {

    { ngx_string("conductor_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_conductor_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_provider"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_conductor_provider_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_conductor_model_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_client"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_conductor_client_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_conductor_loc_conf_t, auth),
      NULL },

    { ngx_string("conductor_builtin_models"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_conductor_main_conf_t, builtin_models),
      NULL },

    { ngx_string("conductor_breaker"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_conductor_breaker_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_cooldown"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_conductor_cooldown_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_state_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_conductor_state_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_history"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_ANY,
      ngx_http_conductor_history_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_estimate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_conductor_estimate_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_strategy"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_conductor_strategy,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_retries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_conductor_loc_conf_t, retries),
      &ngx_http_conductor_retries_bounds },

    { ngx_string("conductor_failover"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_conductor_failover_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_conductor_queue_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_stream_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_conductor_stream_timeout_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_unknown_models"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_conductor_loc_conf_t, unknown_reject),
      &ngx_http_conductor_unknown_models },

    { ngx_string("conductor_response_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_conductor_loc_conf_t, response_headers),
      NULL },

    { ngx_string("conductor_allow_override"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_conductor_loc_conf_t, allow_override),
      NULL },

    { ngx_string("conductor_route"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_conductor_route,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_models"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_conductor_models,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_conductor_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_usage"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_conductor_usage,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_mock"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_conductor_mock,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_conductor_redis_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("conductor_balancer"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_conductor_balancer,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_conductor_module_ctx = {
    ngx_http_conductor_preconfiguration,    /* preconfiguration */
    ngx_http_conductor_postconfiguration,   /* postconfiguration */

    ngx_http_conductor_create_main_conf,    /* create main configuration */
    ngx_http_conductor_init_main_conf,      /* init main configuration */

    ngx_http_conductor_create_srv_conf,     /* create server configuration */
    NULL,                                   /* merge server configuration */

    ngx_http_conductor_create_loc_conf,     /* create location configuration */
    ngx_http_conductor_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_conductor_module = {
    NGX_MODULE_V1,
    &ngx_http_conductor_module_ctx,         /* module context */
    ngx_http_conductor_commands,            /* module directives */
    NGX_HTTP_MODULE,                        /* module type */
    NULL,                                   /* init master */
    NULL,                                   /* init module */
    ngx_http_conductor_init_process,        /* init process */
    NULL,                                   /* init thread */
    NULL,                                   /* exit thread */
    ngx_http_conductor_exit_process,        /* exit process */
    NULL,                                   /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_conductor_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_conductor_add_variables(cf);
}


/* every hook of the module: its phase handlers here, its filters below */

static ngx_int_t
ngx_http_conductor_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    if (ngx_http_conductor_redact_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_conductor_auth_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_conductor_route_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_conductor_log_handler;

    return ngx_http_conductor_filter_init(cf);
}


/* a worker starts: its ledger slot first, its health checks, its Redis */

static ngx_int_t
ngx_http_conductor_init_process(ngx_cycle_t *cycle)
{
    if (ngx_http_conductor_ledger_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_conductor_health_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the fleet's hook is in place before the connection's first tick */
    if (ngx_http_conductor_sync_init_process(cycle) != NGX_OK
        || ngx_http_conductor_redis_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_conductor_state_init_process(cycle);
}


/* a worker exits: the state file with the final totals, then its slot */

static void
ngx_http_conductor_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_conductor_state_exit_process(cycle);
    ngx_http_conductor_ledger_exit_process(cycle);
    ngx_http_conductor_redis_exit_process(cycle);
}


static void *
ngx_http_conductor_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_conductor_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&cmcf->providers, cf->pool, 4,
                       sizeof(ngx_http_conductor_provider_t *))
        != NGX_OK
        || ngx_array_init(&cmcf->models, cf->pool, 8,
                          sizeof(ngx_http_conductor_model_t *))
           != NGX_OK
        || ngx_array_init(&cmcf->clients, cf->pool, 4,
                          sizeof(ngx_http_conductor_client_t *))
           != NGX_OK
        || ngx_array_init(&cmcf->client_keys, cf->pool, 4,
                          sizeof(ngx_http_conductor_client_key_t))
           != NGX_OK)
    {
        return NULL;
    }

    cmcf->builtin_models = NGX_CONF_UNSET;
    cmcf->breaker_failures = NGX_CONF_UNSET_UINT;
    cmcf->breaker_timeout = NGX_CONF_UNSET_MSEC;
    cmcf->cooldown_max = NGX_CONF_UNSET_MSEC;
    cmcf->disabled_time = NGX_CONF_UNSET_MSEC;
    cmcf->history_minutes = NGX_CONF_UNSET_UINT;
    cmcf->history_recent = NGX_CONF_UNSET_UINT;

    return cmcf;
}


static char *
ngx_http_conductor_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    ngx_str_t  name = ngx_string("conductor");

    ngx_conf_init_value(cmcf->builtin_models, 0);
    ngx_conf_init_uint_value(cmcf->breaker_failures, 5);
    ngx_conf_init_msec_value(cmcf->breaker_timeout, 30000);
    ngx_conf_init_msec_value(cmcf->cooldown_max, 15 * 60 * 1000);
    ngx_conf_init_msec_value(cmcf->disabled_time, 5 * 60 * 1000);
    ngx_conf_init_uint_value(cmcf->history_minutes,
                             NGX_HTTP_CONDUCTOR_HISTORY_MINUTES);
    ngx_conf_init_uint_value(cmcf->history_recent,
                             NGX_HTTP_CONDUCTOR_HISTORY_RECENT);

    if (cmcf->providers.nelts == 0) {
        if (cmcf->clients.nelts) {
            return "conductor_client needs a conductor_provider";
        }

        return NGX_CONF_OK;
    }

    /* counters always live in a zone: one is made when none was declared */
    if (cmcf->shm_zone == NULL) {
        cmcf->shm_zone = ngx_shared_memory_add(cf, &name, 4 * 1024 * 1024,
                                               &ngx_http_conductor_module);
        if (cmcf->shm_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        cmcf->shm_zone->init = ngx_http_conductor_init_zone;
        cmcf->shm_zone->data = cmcf;
    }

    if (ngx_http_conductor_init_models(cf, cmcf) != NGX_OK
        || ngx_http_conductor_init_clients(cf, cmcf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the server conf is the balancer's, in upstream blocks */

static void *
ngx_http_conductor_create_srv_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_conductor_balancer_conf_t));
}


static void *
ngx_http_conductor_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_conductor_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_conductor_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    lcf->route = NGX_CONF_UNSET;
    lcf->models = NGX_CONF_UNSET;
    lcf->strategy = NGX_CONF_UNSET_UINT;
    lcf->retries = NGX_CONF_UNSET;
    lcf->unknown_reject = NGX_CONF_UNSET_UINT;
    lcf->response_headers = NGX_CONF_UNSET;
    lcf->allow_override = NGX_CONF_UNSET;
    lcf->failover = NGX_CONF_UNSET_UINT;
    lcf->queue_timeout = NGX_CONF_UNSET_MSEC;
    lcf->queue_max = NGX_CONF_UNSET_UINT;
    lcf->stream_idle = NGX_CONF_UNSET_MSEC;
    lcf->completion_estimate = NGX_CONF_UNSET_UINT;
    lcf->auth = NGX_CONF_UNSET;

    return lcf;
}


static char *
ngx_http_conductor_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_conductor_loc_conf_t *prev = parent;
    ngx_http_conductor_loc_conf_t *conf = child;

    ngx_http_upstream_conf_t        *ucf;
    ngx_http_conductor_main_conf_t  *cmcf;

    /* route and models are per location: not inherited */
    ngx_conf_init_value(conf->route, 0);
    ngx_conf_init_value(conf->models, 0);

    ngx_conf_merge_uint_value(conf->strategy, prev->strategy,
                              NGX_HTTP_CONDUCTOR_ROUND_ROBIN);
    ngx_conf_merge_value(conf->retries, prev->retries, 3);
    ngx_conf_merge_uint_value(conf->unknown_reject, prev->unknown_reject, 0);
    /* 2: shown unless conductor_auth is on and the client is no admin */
    ngx_conf_merge_value(conf->response_headers, prev->response_headers, 2);
    ngx_conf_merge_value(conf->auth, prev->auth, 0);

    if (conf->auth == 1) {
        cmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_conductor_module);

        if (cmcf->clients.nelts == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "conductor_auth on needs a conductor_client");
            return NGX_CONF_ERROR;
        }
    }
    ngx_conf_merge_value(conf->allow_override, prev->allow_override, 0);
    ngx_conf_merge_msec_value(conf->queue_timeout, prev->queue_timeout, 0);
    ngx_conf_merge_uint_value(conf->failover, prev->failover,
                              NGX_CONF_UNSET_UINT);

    /*
     * conductor_failover decides what the proxy retries, in place of
     * proxy_next_upstream: the proxy module's location conf starts with
     * its ngx_http_upstream_conf_t, and it is merged before this module.
     */
    if (conf->route && conf->failover != NGX_CONF_UNSET_UINT) {
        ucf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_proxy_module);
        ucf->next_upstream = conf->failover;
    }
    ngx_conf_merge_uint_value(conf->queue_max, prev->queue_max, 1000);
    ngx_conf_merge_msec_value(conf->stream_idle, prev->stream_idle, 0);
    ngx_conf_merge_uint_value(conf->completion_estimate,
                              prev->completion_estimate, 256);

    return NGX_CONF_OK;
}


static char *
ngx_http_conductor_route(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_loc_conf_t *lcf = conf;

    ngx_http_conductor_main_conf_t  *cmcf;

    if (lcf->route != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_conductor_module);

    if (cmcf->providers.nelts == 0) {
        return "needs at least one conductor_provider defined before it";
    }

    lcf->route = 1;

    return NGX_CONF_OK;
}
